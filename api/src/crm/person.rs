//! The personal fields a lead and a contact share (names, email, phone,
//! postal address), validated, encrypted, patched, shown and anonymised in
//! one place. At rest they are a [`Person`]: email, phone and address
//! encrypted with the tenant-independent PII keys ([`Pii`]), the email also
//! as a blind index so the tenant's uniqueness rule can be checked without
//! decrypting.

use schemas::crm::Person;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crypto::{Field, Pii};

/// The record a [`Person`] is embedded in (`leads` or `contacts`, and its
/// `_id`): its ciphertexts are bound to fields `email`, `phone`, `address`
/// of that record ([`Field`]).
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    /// `leads` or `contacts`.
    pub collection: &'a str,
    /// The record's `_id`.
    pub id: bson::oid::ObjectId,
}

impl<'a> Owner<'a> {
    fn field(self, name: &'a str) -> Field<'a> {
        Field::new(self.collection, self.id, name)
    }
}
use crate::error::ApiError;
use crate::validate;

/// A postal address (encrypted at rest as a whole).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Address {
    /// Street, at most 200 characters.
    #[schema(schema_with = crate::openapi::opt_text_200)]
    pub street: String,
    /// City, at most 100 characters.
    #[schema(schema_with = crate::openapi::opt_text_100)]
    pub city: String,
    /// Postal code, at most 20 characters.
    #[schema(schema_with = crate::openapi::opt_text_20)]
    pub postal_code: String,
    /// ISO 3166-1 alpha-2 country.
    #[schema(schema_with = crate::openapi::country_or_empty)]
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
pub fn create(pii: &Pii, owner: Owner<'_>, input: PersonInput<'_>) -> Result<Person, ApiError> {
    let required =
        |field: &str, v: Option<&str>| v.map(str::to_owned).ok_or_else(|| ApiError::invalid(field, "required"));
    let mail = validate::email("email", &required("email", input.email)?)?;
    let mut person = Person {
        first_name: validate::text("first_name", &required("first_name", input.first_name)?, 1, 50)?,
        last_name: validate::text("last_name", &required("last_name", input.last_name)?, 1, 50)?,
        email_enc: pii.encrypt(&mail, owner.field("email"))?,
        email_index: pii.email_index(&mail),
        phone_enc: None,
        address_enc: None,
    };
    patch(
        pii,
        owner,
        &mut person,
        PersonInput { phone: input.phone, address: input.address, ..PersonInput::default() },
    )?;
    Ok(person)
}

/// Applies the present fields of `input` to `person`; 400 naming the field
/// when one is invalid (then `person` may be partly changed: callers patch
/// a copy).
pub fn patch(pii: &Pii, owner: Owner<'_>, person: &mut Person, input: PersonInput<'_>) -> Result<(), ApiError> {
    if let Some(v) = input.first_name {
        person.first_name = validate::text("first_name", v, 1, 50)?;
    }
    if let Some(v) = input.last_name {
        person.last_name = validate::text("last_name", v, 1, 50)?;
    }
    if let Some(v) = input.email {
        let mail = validate::email("email", v)?;
        person.email_enc = pii.encrypt(&mail, owner.field("email"))?;
        person.email_index = pii.email_index(&mail);
    }
    if let Some(v) = input.phone {
        person.phone_enc = if v.trim().is_empty() {
            None
        } else {
            Some(pii.encrypt(&validate::phone("phone", v)?, owner.field("phone"))?)
        };
    }
    if let Some(a) = input.address {
        person.address_enc = Some(encrypt_address(pii, owner, a)?);
    }
    Ok(())
}

/// `person` decrypted for a view; an address that no longer parses shows
/// as `None`.
pub fn view(pii: &Pii, owner: Owner<'_>, person: &Person) -> Result<PersonView, ApiError> {
    let address = match &person.address_enc {
        Some(a) => serde_json::from_str(&pii.decrypt(a, owner.field("address"))?).ok(),
        None => None,
    };
    Ok(PersonView {
        first_name: person.first_name.clone(),
        last_name: person.last_name.clone(),
        email: pii.decrypt(&person.email_enc, owner.field("email"))?,
        phone: person.phone_enc.as_deref().map(|v| pii.decrypt(v, owner.field("phone"))).transpose()?,
        address,
    })
}

/// Anonymises `person` for an erasure (GDPR art. 17): names become
/// `erased`, the email the unique `placeholder` (so the tenant's email
/// index stays unique), phone and address are dropped.
pub fn anonymise(
    pii: &Pii,
    owner: Owner<'_>,
    person: &mut Person,
    erased: &str,
    placeholder: &str,
) -> Result<(), ApiError> {
    person.first_name = erased.into();
    person.last_name = erased.into();
    person.email_enc = pii.encrypt(placeholder, owner.field("email"))?;
    person.email_index = pii.email_index(placeholder);
    person.phone_enc = None;
    person.address_enc = None;
    Ok(())
}

/// `a`, validated (lengths, ISO country), as encrypted JSON.
pub fn encrypt_address(pii: &Pii, owner: Owner<'_>, a: &Address) -> Result<String, ApiError> {
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
    Ok(pii.encrypt(&serde_json::to_string(&a).unwrap_or_default(), owner.field("address"))?)
}

/// `person` (embedded in `from`) with its ciphertexts re-encrypted for
/// `to`: a lead's person copied into the contact it converts to.
pub fn rebind(pii: &Pii, person: &Person, from: Owner<'_>, to: Owner<'_>) -> Result<Person, ApiError> {
    let re = |v: &str, name| pii.rebind(v, from.field(name), to.field(name));
    Ok(Person {
        email_enc: re(&person.email_enc, "email")?,
        phone_enc: person.phone_enc.as_deref().map(|v| re(v, "phone")).transpose()?,
        address_enc: person.address_enc.as_deref().map(|v| re(v, "address")).transpose()?,
        ..person.clone()
    })
}
