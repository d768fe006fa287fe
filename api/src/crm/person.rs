//! The personal fields a lead and a contact share (names, email, phone,
//! postal address), validated, encrypted, patched, shown and anonymised in
//! one place. At rest they are a [`Person`]: email, phone and address
//! encrypted with the tenant-independent PII keys ([`Pii`]), the email also
//! as a blind index so the tenant's uniqueness rule can be checked without
//! decrypting.

use schemas::crm::Person;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::crypto::Pii;
use crate::error::ApiError;
use crate::validate;

/// A postal address (encrypted at rest as a whole).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Address {
    /// Street.
    pub street: String,
    /// City.
    pub city: String,
    /// Postal code.
    pub postal_code: String,
    /// ISO 3166-1 alpha-2 country.
    pub country: String,
}

/// The personal fields as the API shows them (decrypted); flattened into
/// the lead and contact views.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PersonView {
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Email.
    pub email: String,
    /// Phone, E.164.
    pub phone: Option<String>,
    /// Address.
    pub address: Option<Address>,
}

/// Personal fields of a create or patch body: `None` leaves a field as it
/// is on a patch (a create requires names and email); an empty `phone`
/// clears it.
#[derive(Debug, Default, Clone, Copy)]
pub struct PersonInput<'a> {
    /// First name, 1..=50.
    pub first_name: Option<&'a str>,
    /// Last name, 1..=50.
    pub last_name: Option<&'a str>,
    /// Email (lowercased).
    pub email: Option<&'a str>,
    /// Phone, E.164 once spaces, dots, dashes and brackets are removed.
    pub phone: Option<&'a str>,
    /// Postal address.
    pub address: Option<&'a Address>,
}

/// A new [`Person`] from a create body; 400 naming the field when one is
/// missing or invalid.
pub fn create(pii: &Pii, input: PersonInput<'_>) -> Result<Person, ApiError> {
    let required =
        |field: &str, v: Option<&str>| v.map(str::to_owned).ok_or_else(|| ApiError::invalid(field, "required"));
    let mail = validate::email("email", &required("email", input.email)?)?;
    let mut person = Person {
        first_name: validate::text("first_name", &required("first_name", input.first_name)?, 1, 50)?,
        last_name: validate::text("last_name", &required("last_name", input.last_name)?, 1, 50)?,
        email_enc: pii.encrypt(&mail)?,
        email_index: pii.email_index(&mail),
        phone_enc: None,
        address_enc: None,
    };
    patch(pii, &mut person, PersonInput { phone: input.phone, address: input.address, ..PersonInput::default() })?;
    Ok(person)
}

/// Applies the present fields of `input` to `person`; 400 naming the field
/// when one is invalid (then `person` may be partly changed: callers patch
/// a copy).
pub fn patch(pii: &Pii, person: &mut Person, input: PersonInput<'_>) -> Result<(), ApiError> {
    if let Some(v) = input.first_name {
        person.first_name = validate::text("first_name", v, 1, 50)?;
    }
    if let Some(v) = input.last_name {
        person.last_name = validate::text("last_name", v, 1, 50)?;
    }
    if let Some(v) = input.email {
        let mail = validate::email("email", v)?;
        person.email_enc = pii.encrypt(&mail)?;
        person.email_index = pii.email_index(&mail);
    }
    if let Some(v) = input.phone {
        person.phone_enc = if v.trim().is_empty() { None } else { Some(pii.encrypt(&validate::phone("phone", v)?)?) };
    }
    if let Some(a) = input.address {
        person.address_enc = Some(encrypt_address(pii, a)?);
    }
    Ok(())
}

/// `person` decrypted for a view; an address that no longer parses shows
/// as `None`.
pub fn view(pii: &Pii, person: &Person) -> Result<PersonView, ApiError> {
    let address = match &person.address_enc {
        Some(a) => serde_json::from_str(&pii.decrypt(a)?).ok(),
        None => None,
    };
    Ok(PersonView {
        first_name: person.first_name.clone(),
        last_name: person.last_name.clone(),
        email: pii.decrypt(&person.email_enc)?,
        phone: person.phone_enc.as_deref().map(|v| pii.decrypt(v)).transpose()?,
        address,
    })
}

/// Anonymises `person` for an erasure (GDPR art. 17): names become
/// `erased`, the email the unique `placeholder` (so the tenant's email
/// index stays unique), phone and address are dropped.
pub fn anonymise(pii: &Pii, person: &mut Person, erased: &str, placeholder: &str) -> Result<(), ApiError> {
    person.first_name = erased.into();
    person.last_name = erased.into();
    person.email_enc = pii.encrypt(placeholder)?;
    person.email_index = pii.email_index(placeholder);
    person.phone_enc = None;
    person.address_enc = None;
    Ok(())
}

/// `a`, validated (lengths, ISO country), as encrypted JSON.
pub fn encrypt_address(pii: &Pii, a: &Address) -> Result<String, ApiError> {
    let a = Address {
        street: validate::opt_text("address.street", Some(&a.street), 200)?.unwrap_or_default(),
        city: validate::opt_text("address.city", Some(&a.city), 100)?.unwrap_or_default(),
        postal_code: validate::opt_text("address.postal_code", Some(&a.postal_code), 20)?.unwrap_or_default(),
        country: if a.country.is_empty() || validate::is_country(&a.country) {
            a.country.clone()
        } else {
            return Err(ApiError::invalid("address.country", "must be an ISO 3166-1 alpha-2 code such as FR"));
        },
    };
    Ok(pii.encrypt(&serde_json::to_string(&a).unwrap_or_default())?)
}
