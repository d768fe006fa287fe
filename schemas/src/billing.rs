//! Billing documents in MongoDB (issue #7; seeds 003 `invoices`,
//! `payments`, 004 `invoices`, `payments`).
//!
//! ## Mapping of the seeds
//! - Seed 003 `invoice_number` (`INV-2025-0001`) and seed 004
//!   (`INV-2025-00001`) become `number` = `INV-{year}-{seq:05}`, sequential
//!   per tenant and year (`year`, `seq`, unique together).
//! - Seed 003's `client {name, email, address, country}` and seed 004's
//!   flat `client_*` fields become [`InvoiceClient`], email and address
//!   encrypted (`…Enc`) with the email's blind index for data-subject
//!   requests.
//! - Every amount is integer minor units (`…Minor`) of `currency`;
//!   `vat_rate`/`tax_rate` (18, a percentage) becomes `vatRateBp` (basis
//!   points: 1800 = 18 %). Rounding rules: `api::billing`.
//! - Seed 004's `paid_amount` is `paidMinor`, kept equal to the completed
//!   payments minus the completed refunds (`appliedPayments` lists them).
//! - Payments: seed 003 methods CARD / BANK_TRANSFER / CASH, `provider`,
//!   `transaction_id` → `providerReference`; seed 004's `payment_id` is
//!   `_id`; the idempotency key of the request that recorded a payment is
//!   stored (unique per tenant).

use bson::{oid::ObjectId, DateTime};
use serde::{Deserialize, Serialize};

/// Status of an invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InvoiceStatus {
    /// Editable, not sent.
    Draft,
    /// Sent, awaiting payment.
    Sent,
    /// Payments cover the total.
    Paid,
    /// Sent, unpaid past its due date.
    Overdue,
    /// Voided (only without payments).
    Cancelled,
}

impl InvoiceStatus {
    /// Whether a user may move an invoice from `self` to `to` directly.
    /// `Paid` is reached only through payments, and left only through
    /// refunds; `Overdue` by the sweep or when a refund lands after the
    /// due date.
    pub fn can_move_to(self, to: InvoiceStatus) -> bool {
        use InvoiceStatus::*;
        matches!(
            (self, to),
            (Draft, Sent) | (Draft, Cancelled) | (Sent, Cancelled) | (Overdue, Cancelled) | (Sent, Overdue)
        )
    }
}

/// Who is billed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceClient {
    /// Name.
    pub name: String,
    /// Company.
    #[serde(default)]
    pub company: String,
    /// Email, encrypted.
    pub email_enc: String,
    /// Blind index of the email.
    pub email_index: String,
    /// Postal address (free text), encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_enc: Option<String>,
    /// ISO 3166-1 alpha-2 country.
    #[serde(default)]
    pub country: String,
    /// VAT number.
    #[serde(default)]
    pub vat_number: String,
}

/// Who bills (the tenant's company block on the PDF).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Issuer {
    /// Company name.
    pub name: String,
    /// Postal address (free text, may hold line breaks).
    #[serde(default)]
    pub address: String,
    /// VAT number.
    #[serde(default)]
    pub vat_number: String,
    /// Bank details shown under the payment terms (IBAN, BIC).
    #[serde(default)]
    pub bank_details: String,
}

/// One line of an invoice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceLine {
    /// What is billed.
    pub description: String,
    /// Quantity in thousandths (1500 = 1.5).
    pub quantity_milli: i64,
    /// Unit price, minor units.
    pub unit_price_minor: i64,
    /// `quantity × unit price`, rounded half away from zero, minor units.
    pub total_minor: i64,
}

/// Records an invoice is about.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceLinks {
    /// Contact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<ObjectId>,
    /// Lead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead_id: Option<ObjectId>,
    /// Opportunity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opportunity_id: Option<ObjectId>,
    /// Campaign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<ObjectId>,
}

/// An invoice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Invoice {
    /// Invoice id.
    #[serde(rename = "_id")]
    pub id: ObjectId,
    /// Tenant.
    pub client_id: ObjectId,
    /// `INV-{year}-{seq:05}`.
    pub number: String,
    /// Year of the issue date (UTC).
    pub year: i32,
    /// Sequence in the tenant's year, from 1, without gaps.
    pub seq: i64,
    /// Status.
    pub status: InvoiceStatus,
    /// Issuer block.
    pub issuer: Issuer,
    /// Billed client.
    pub client: InvoiceClient,
    /// Lines.
    pub lines: Vec<InvoiceLine>,
    /// ISO 4217 currency.
    pub currency: String,
    /// Sum of the line totals, minor units.
    pub subtotal_minor: i64,
    /// VAT rate, basis points (2000 = 20 %).
    pub vat_rate_bp: i64,
    /// VAT on the subtotal, rounded half away from zero, minor units.
    pub vat_minor: i64,
    /// Subtotal + VAT, minor units.
    pub total_minor: i64,
    /// Completed payments minus completed refunds, minor units.
    #[serde(default)]
    pub paid_minor: i64,
    /// Payments (and refunds) counted in `paidMinor`.
    #[serde(default)]
    pub applied_payments: Vec<ObjectId>,
    /// Optimistic-concurrency version, bumped by every write.
    #[serde(default)]
    pub version: i64,
    /// Issue date, UTC.
    pub issue_date: DateTime,
    /// Due date, UTC.
    pub due_date: DateTime,
    /// Payment terms shown on the PDF.
    #[serde(default)]
    pub payment_terms: String,
    /// Free note on the PDF.
    #[serde(default)]
    pub notes: String,
    /// Related CRM records.
    #[serde(default)]
    pub links: InvoiceLinks,
    /// First sent, UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<DateTime>,
    /// Became paid, UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paid_at: Option<DateTime>,
    /// Cancelled, UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled_at: Option<DateTime>,
    /// Creation time, UTC.
    pub created_at: DateTime,
    /// Last change, UTC.
    pub updated_at: DateTime,
}

/// Payment or refund.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentKind {
    /// Money in.
    Payment,
    /// Money back out.
    Refund,
}

/// State of a payment record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentStatus {
    /// Recorded, not yet applied to the invoice (a retry finishes it).
    Pending,
    /// Applied to the invoice.
    Completed,
    /// Refused (`failureReason`), not applied.
    Failed,
}

/// A payment or refund against an invoice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    /// Payment id.
    #[serde(rename = "_id")]
    pub id: ObjectId,
    /// Tenant.
    pub client_id: ObjectId,
    /// Invoice.
    pub invoice_id: ObjectId,
    /// Payment or refund.
    pub kind: PaymentKind,
    /// Amount, minor units, > 0.
    pub amount_minor: i64,
    /// Currency (the invoice's).
    pub currency: String,
    /// `CARD`, `BANK_TRANSFER`, `CASH`, `CHECK`, `OTHER`.
    pub method: String,
    /// Payment provider (`monetico`, `stripe`, ...).
    #[serde(default)]
    pub provider: String,
    /// The provider's reference.
    #[serde(default)]
    pub provider_reference: String,
    /// State.
    pub status: PaymentStatus,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// `Idempotency-Key` of the request; unique per tenant.
    pub idempotency_key: String,
    /// SHA-256 of the request that recorded it (a reused key with another
    /// request is refused).
    pub request_hash: String,
    /// Creation time, UTC.
    pub created_at: DateTime,
    /// Applied at, UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paid_is_reached_by_payments_only() {
        use InvoiceStatus::*;
        assert!(Draft.can_move_to(Sent) && Sent.can_move_to(Overdue) && Sent.can_move_to(Cancelled));
        assert!(
            !Draft.can_move_to(Paid)
                && !Sent.can_move_to(Paid)
                && !Paid.can_move_to(Cancelled)
                && !Cancelled.can_move_to(Sent)
                && !Sent.can_move_to(Draft)
        );
        assert_eq!(bson::to_bson(&Overdue).unwrap(), bson::Bson::String("OVERDUE".into()));
    }
}
