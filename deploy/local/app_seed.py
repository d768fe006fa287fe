#!/usr/bin/env python3
"""The dashboard's demo logins and campaign (issue #20), through the API.

    deploy/local/app_seed.py            # after the load generator (demo.sh runs it)

Idempotent. For the demo tenant (demo.smartlinks.local, made by loadgen):
- three back-office users, an admin, a viewer and a manager who signs in
  with a TOTP code, with passwords (and the manager's TOTP secret) generated
  once and kept in $STATE/app-logins.json (mode 600): the demo's login and
  the browser tests' sign-ins and role checks;
- a campaign promoting the tenant's links, with 7 days of ad KPIs on Meta
  and TikTok, so that the campaigns page shows the ad side beside our
  click-outs.
Needs the api on $API (default http://127.0.0.1:8081) and the operator key
in $STATE/api-operator-key. Prints the logins file's path.
"""
import base64
import datetime as dt
import hashlib
import hmac
import json
import struct
import time
import os
import secrets
import sys
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STATE = os.environ.get("SMARTLINKS_STATE_DIR", os.path.join(ROOT, ".state"))
API = os.environ.get("API", "http://127.0.0.1:8081")
HOST = "demo.smartlinks.local"
LOGINS = os.path.join(STATE, "app-logins.json")
CAMPAIGN = "In Your Light: release push"


def call(method, path, body=None, token=None):
    """JSON request; returns (status, answer)."""
    req = urllib.request.Request(API + path, method=method)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, data, timeout=30) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode(errors="replace")


def totp(secret, at=None):
    """RFC 6238 code (SHA-1, 6 digits, 30 s steps) of a base32 secret."""
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    mac = hmac.new(key, struct.pack(">Q", int((at or time.time()) // 30)), hashlib.sha1).digest()
    off = mac[-1] & 15
    return "%06d" % ((struct.unpack(">I", mac[off:off + 4])[0] & 0x7FFFFFFF) % 1_000_000)


def must(status_answer, *ok):
    status, answer = status_answer
    if status not in ok:
        sys.exit(f"app_seed: the API answered {status}: {answer}")
    return answer


def main():
    op = open(os.path.join(STATE, "api-operator-key")).read().strip()
    tenants = must(call("GET", f"/v1/clients?domain={HOST}", token=op), 200)
    if not tenants:
        sys.exit("app_seed: no demo tenant: run the load generator first (deploy/local/demo.sh)")
    tenant = tenants[0]["id"]

    logins = json.load(open(LOGINS)) if os.path.exists(LOGINS) else {}
    users = {u["email"]: u for u in must(call("GET", f"/v1/users?client_id={tenant}", token=op), 200)}
    for role, first in (("admin", "Dana"), ("viewer", "Vic"), ("manager", "Max")):
        email = f"{role}@{HOST}"
        if logins.get(role, {}).get("email") == email and email in users:
            # Set back as the demo needs it (schemathesis' operator run may
            # change any user's role or deactivate it).
            u = users[email]
            if u["role"] != role or not u["is_active"]:
                must(call("PATCH", f"/v1/users/{u['id']}", {"role": role, "is_active": True}, op), 200)
            continue
        password = secrets.token_urlsafe(18)
        status, answer = call("POST", "/v1/users", {
            "client_id": tenant, "email": email, "password": password,
            "first_name": first, "last_name": "Demo", "role": role,
        }, op)
        if status == 409:
            sys.exit(f"app_seed: {email} exists but {LOGINS} has no password for it "
                     "(remove the user, or the state directory, and run again)")
        if status != 201:
            sys.exit(f"app_seed: creating {email} answered {status}: {answer}")
        logins[role] = {"email": email, "password": password, "client_id": tenant}
        if role == "manager":
            # The manager signs in with a second factor (TOTP), enrolled here.
            session = must(call("POST", "/v1/auth/login", {"email": email, "password": password}, ""), 200)["token"]
            secret = must(call("POST", "/v1/auth/totp/setup", {}, session), 200)["secret"]
            must(call("POST", "/v1/auth/totp/enable", {"code": totp(secret)}, session), 200, 204)
            call("POST", "/v1/auth/logout", None, session)
            logins[role]["totp_secret"] = secret
        old = os.umask(0o077)
        with open(LOGINS, "w") as f:
            json.dump(logins, f, indent=2)
        os.umask(old)

    campaigns = must(call("GET", f"/v1/campaigns?client_id={tenant}", token=op), 200)
    if not any(c["name"] == CAMPAIGN for c in campaigns):
        links = must(call("GET", f"/v1/smartlinks?client_id={tenant}&status=active&limit=50", token=op), 200)["items"]
        today = dt.datetime.now(dt.timezone.utc).date()
        start = today - dt.timedelta(days=6)
        c = must(call("POST", "/v1/campaigns", {
            "client_id": tenant, "name": CAMPAIGN, "kind": "acquisition", "currency": "EUR",
            "artist_name": "Jiro", "song_title": "In Your Light",
            "start_date": start.isoformat(), "end_date": (today + dt.timedelta(days=7)).isoformat(),
            "budget_minor": 250000, "objective": "streams",
            "platforms": [{"name": "meta"}, {"name": "tiktok"}],
            "smartlink_ids": [l["id"] for l in links[:3]],
        }, op), 201)
        call("PATCH", f"/v1/campaigns/{c['id']}", {"status": "active"}, op)
        kpis = []
        for i in range(7):
            day = (start + dt.timedelta(days=i)).isoformat()
            kpis.append({"date": day, "platform": "meta", "impressions": 12000 + 900 * i, "clicks": 310 + 25 * i,
                         "reach": 9000 + 700 * i, "spend_minor": 4500 + 300 * i, "conversions": 40 + 3 * i})
            kpis.append({"date": day, "platform": "tiktok", "impressions": 20000 + 1500 * i, "views": 8000 + 600 * i,
                         "clicks": 220 + 18 * i, "reach": 15000 + 1000 * i, "spend_minor": 3000 + 200 * i})
        must(call("PUT", f"/v1/campaigns/{c['id']}/kpis", kpis, op), 200)
    print(LOGINS)


if __name__ == "__main__":
    main()
