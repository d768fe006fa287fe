//! Invoice arithmetic (issue #7): integer minor units throughout, no
//! floating point on money.
//!
//! Rounding rules:
//! - A line total is `quantity × unit price`, quantity in thousandths,
//!   rounded to the minor unit **half away from zero** (1.5 × 0.05 € =
//!   0.075 € → 0.08 €; −0.075 € → −0.08 €).
//! - VAT is computed **once on the subtotal** (not per line) at the
//!   invoice's rate in basis points, rounded half away from zero
//!   (subtotal 10.05 € at 5.5 % = 0.55275 € → 0.55 €).
//! - total = subtotal + VAT, exactly.
//!
//! Products are computed in `i128`, so no intermediate overflows for any
//! accepted input (quantities ≤ 10^6, prices ≤ 10^12 minor units).

use schemas::billing::InvoiceLine;

/// `n / d` rounded half away from zero; `d > 0`.
pub fn round_div(n: i128, d: i128) -> i128 {
    let (q, r) = (n / d, n % d);
    if 2 * r.abs() >= d {
        q + n.signum()
    } else {
        q
    }
}

/// A quantity given as a decimal number with at most 3 decimals, in
/// thousandths; `None` for more decimals, ≤ 0, or above 10^6.
pub fn quantity_milli(q: f64) -> Option<i64> {
    let m = q * 1000.0;
    let r = m.round();
    ((m - r).abs() < 1e-6 && r > 0.0 && r <= 1e9).then_some(r as i64)
}

/// Total of one line, minor units.
pub fn line_total(quantity_milli: i64, unit_price_minor: i64) -> i64 {
    round_div(i128::from(quantity_milli) * i128::from(unit_price_minor), 1000) as i64
}

/// Subtotal, VAT and total of an invoice, minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Sum of the line totals.
    pub subtotal_minor: i64,
    /// VAT on the subtotal.
    pub vat_minor: i64,
    /// Subtotal + VAT.
    pub total_minor: i64,
}

/// The totals of `lines` (their `total_minor` already computed) at
/// `vat_rate_bp` basis points.
pub fn totals(lines: &[InvoiceLine], vat_rate_bp: i64) -> Totals {
    let subtotal: i128 = lines.iter().map(|l| i128::from(l.total_minor)).sum();
    let vat = round_div(subtotal * i128::from(vat_rate_bp), 10_000);
    Totals { subtotal_minor: subtotal as i64, vat_minor: vat as i64, total_minor: (subtotal + vat) as i64 }
}

/// Digits after the decimal point of `currency`'s minor unit (ISO 4217):
/// 0 for JPY, KRW, CLP, ISK, VND, XOF, XAF; 3 for BHD, JOD, KWD, OMR, TND; 2 otherwise.
pub fn minor_digits(currency: &str) -> u32 {
    match currency {
        "JPY" | "KRW" | "CLP" | "ISK" | "VND" | "XOF" | "XAF" => 0,
        "BHD" | "JOD" | "KWD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

/// `minor` as a decimal amount with thousands separators and the currency
/// code: `118000, EUR` → `1,180.00 EUR`.
pub fn format_amount(minor: i64, currency: &str) -> String {
    let digits = minor_digits(currency);
    let scale = 10_i64.pow(digits);
    let (whole, frac) = (minor.unsigned_abs() / scale as u64, minor.unsigned_abs() % scale as u64);
    let w = whole.to_string();
    let mut grouped = String::new();
    for (i, c) in w.chars().enumerate() {
        if i > 0 && (w.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if minor < 0 { "-" } else { "" };
    if digits == 0 {
        format!("{sign}{grouped} {currency}")
    } else {
        format!("{sign}{grouped}.{frac:0width$} {currency}", width = digits as usize)
    }
}

/// A VAT rate in basis points as a percentage: `550` → `5.5 %`.
pub fn format_rate(bp: i64) -> String {
    let s = format!("{}.{:02}", bp / 100, bp % 100);
    format!("{} %", s.trim_end_matches('0').trim_end_matches('.'))
}

/// The invoice number of `seq` in `year`: `INV-2026-00042`.
pub fn number(year: i32, seq: i64) -> String {
    format!("INV-{year}-{seq:05}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(q: i64, p: i64) -> InvoiceLine {
        InvoiceLine {
            description: String::new(),
            quantity_milli: q,
            unit_price_minor: p,
            total_minor: line_total(q, p),
        }
    }

    #[test]
    fn rounding_is_half_away_from_zero_on_lines_and_on_the_vat_of_the_subtotal() {
        assert_eq!(round_div(5, 2), 3);
        assert_eq!(round_div(-5, 2), -3);
        assert_eq!(round_div(4, 3), 1);
        assert_eq!(line_total(1500, 5), 8, "1.5 × 0.05 = 0.075 → 0.08");
        assert_eq!(line_total(1500, -5), -8);
        assert_eq!(line_total(333, 100), 33, "0.333 × 1.00 = 0.333 → 0.33");
        // Seed 003's example: 1000.00 at 18 % → 180.00, 1180.00.
        assert_eq!(
            totals(&[line(1000, 100_000)], 1800),
            Totals { subtotal_minor: 100_000, vat_minor: 18_000, total_minor: 118_000 }
        );
        // 10.05 at 5.5 % = 0.55275 → 0.55; per-line rounding would say otherwise.
        assert_eq!(
            totals(&[line(1000, 335), line(2000, 335)], 550),
            Totals { subtotal_minor: 1005, vat_minor: 55, total_minor: 1060 }
        );
        // 0.10 at 5 % = 0.005 → 0.01 (half up), and a discount line.
        assert_eq!(totals(&[line(1000, 10)], 500).vat_minor, 1);
        assert_eq!(
            totals(&[line(1000, 10_000), line(1000, -2_500)], 2000),
            Totals { subtotal_minor: 7_500, vat_minor: 1_500, total_minor: 9_000 }
        );
        // Large amounts stay exact.
        assert_eq!(line_total(1_000_000_000, 1_000_000_000_000), 1_000_000_000_000_000_000, "10^6 × 10^12 fits in i64");
    }

    #[test]
    fn quantities_amounts_and_numbers_format() {
        assert_eq!(quantity_milli(1.5), Some(1500));
        assert_eq!(quantity_milli(0.001), Some(1));
        assert_eq!(quantity_milli(2.0005), None);
        assert_eq!(quantity_milli(0.0), None);
        assert_eq!(quantity_milli(-1.0), None);
        assert_eq!(format_amount(118_000, "EUR"), "1,180.00 EUR");
        assert_eq!(format_amount(-5, "USD"), "-0.05 USD");
        assert_eq!(format_amount(1_234_567, "JPY"), "1,234,567 JPY");
        assert_eq!(format_amount(1_000, "KWD"), "1.000 KWD");
        assert_eq!(format_rate(2000), "20 %");
        assert_eq!(format_rate(550), "5.5 %");
        assert_eq!(format_rate(1825), "18.25 %");
        assert_eq!(number(2026, 42), "INV-2026-00042");
    }
}
