//! Billing (issue #7; seeds 003, 004): invoices with gapless per-tenant,
//! per-year numbers, integer minor-unit totals ([`money`]: line totals and
//! VAT rounded half away from zero), a validated status machine, PDFs
//! ([`pdf`]) mailed with their log, payments and refunds with idempotency
//! keys, and the overdue sweep ([`sweep_overdue`], also run in the
//! background by [`crate::start`]).

mod invoices;
pub mod money;
pub mod pdf;

use axum::routing::{get, post};
use axum::Router;
use utoipa::OpenApi;

pub use invoices::{payment_view, sweep_overdue, view as invoice_view, InvoiceView, PaymentView};

use crate::state::AppState;

/// The billing routes (behind authentication).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/invoices", post(invoices::create).get(invoices::list))
        .route("/v1/invoices/overdue-sweep", post(invoices::overdue_sweep))
        .route("/v1/invoices/{id}", get(invoices::get).patch(invoices::patch))
        .route("/v1/invoices/{id}/pdf", get(invoices::pdf))
        .route("/v1/invoices/{id}/send", post(invoices::send))
        .route("/v1/invoices/{id}/payments", post(invoices::record_payment).get(invoices::list_payments))
}

/// The OpenAPI paths of [`router`].
#[derive(OpenApi)]
#[openapi(paths(
    invoices::create,
    invoices::list,
    invoices::get,
    invoices::patch,
    invoices::pdf,
    invoices::send,
    invoices::record_payment,
    invoices::list_payments,
    invoices::overdue_sweep
))]
pub struct Doc;
