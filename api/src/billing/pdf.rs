//! Invoice PDFs (issue #7), written with `pdf-writer`: A4 pages, the
//! standard Helvetica fonts (no embedding; WinAnsi encoding, so Latin-1
//! text and `€` print, anything else becomes `?`), the issuer and client
//! blocks, the lines (continued on further pages when they do not fit),
//! subtotal, VAT, total, amount paid and due, payment terms and notes.

use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str, TextStr};
use schemas::billing::Invoice;

use super::money::{format_amount, format_rate};

const WIDTH: f32 = 595.0;
const HEIGHT: f32 = 842.0;
const MARGIN: f32 = 50.0;
const REGULAR: Name<'static> = Name(b"F1");
const BOLD: Name<'static> = Name(b"F2");

/// `s` in the WinAnsi encoding (Windows-1252): Latin-1 as is, `€` and the
/// typographic quotes and dashes mapped, other characters `?`.
pub fn winansi(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| match c {
            '€' => 0x80,
            '‚' => 0x82,
            '„' => 0x84,
            '…' => 0x85,
            '‘' => 0x91,
            '’' => 0x92,
            '“' => 0x93,
            '”' => 0x94,
            '•' => 0x95,
            '–' => 0x96,
            '—' => 0x97,
            '\t' | '\n' | '\r' => b' ',
            c if (c as u32) < 0x7f && (c as u32) >= 0x20 => c as u8,
            c if (0xa0..=0xff).contains(&(c as u32)) => c as u32 as u8,
            _ => b'?',
        })
        .collect()
}

/// Text placed on pages, with page breaks.
struct Layout {
    pages: Vec<Content>,
    y: f32,
}

impl Layout {
    fn new() -> Self {
        Layout { pages: vec![Content::new()], y: HEIGHT - MARGIN }
    }

    fn page(&mut self) -> &mut Content {
        let last = self.pages.len() - 1;
        &mut self.pages[last]
    }

    fn text(&mut self, x: f32, y: f32, font: Name, size: f32, s: &str) {
        let bytes = winansi(s);
        let c = self.page();
        c.begin_text();
        c.set_font(font, size);
        c.next_line(x, y);
        c.show(Str(&bytes));
        c.end_text();
    }

    /// Text right-aligned at `right` (Helvetica's average width, good enough for digits).
    fn text_right(&mut self, right: f32, y: f32, font: Name, size: f32, s: &str) {
        let w = s.chars().count() as f32 * size * 0.556;
        self.text(right - w, y, font, size, s);
    }

    fn rule(&mut self, y: f32) {
        let c = self.page();
        c.set_line_width(0.5);
        c.move_to(MARGIN, y);
        c.line_to(WIDTH - MARGIN, y);
        c.stroke();
    }

    /// Moves down by `dy`, starting a new page when the bottom margin is reached.
    fn down(&mut self, dy: f32) -> f32 {
        if self.y - dy < MARGIN + 40.0 {
            self.pages.push(Content::new());
            self.y = HEIGHT - MARGIN;
        }
        self.y -= dy;
        self.y
    }
}

/// The PDF of `inv`, whose client email and address are given decrypted.
pub fn invoice_pdf(inv: &Invoice, client_email: &str, client_address: Option<&str>) -> Vec<u8> {
    let cur = inv.currency.as_str();
    let mut l = Layout::new();
    // Header: issuer left, invoice block right.
    let y = l.y;
    l.text(MARGIN, y, BOLD, 16.0, &inv.issuer.name);
    l.text_right(WIDTH - MARGIN, y, BOLD, 16.0, "INVOICE");
    let mut yl = y;
    for line in inv.issuer.address.lines().filter(|s| !s.trim().is_empty()) {
        yl -= 13.0;
        l.text(MARGIN, yl, REGULAR, 9.0, line.trim());
    }
    if !inv.issuer.vat_number.is_empty() {
        yl -= 13.0;
        l.text(MARGIN, yl, REGULAR, 9.0, &format!("VAT {}", inv.issuer.vat_number));
    }
    let date = |d: bson::DateTime| d.try_to_rfc3339_string().map(|s| s[..10].to_string()).unwrap_or_default();
    let mut yr = y;
    for (k, v) in [
        ("Number", inv.number.clone()),
        ("Issue date", date(inv.issue_date)),
        ("Due date", date(inv.due_date)),
        ("Status", format!("{:?}", inv.status).to_uppercase()),
    ] {
        yr -= 13.0;
        l.text(WIDTH - MARGIN - 200.0, yr, REGULAR, 9.0, k);
        l.text_right(WIDTH - MARGIN, yr, BOLD, 9.0, &v);
    }
    l.y = yl.min(yr) - 30.0;
    // Client block.
    let y = l.y;
    l.text(MARGIN, y, BOLD, 10.0, "Bill to");
    let mut yc = y;
    let company = (!inv.client.company.is_empty()).then_some(inv.client.company.as_str());
    let vat = (!inv.client.vat_number.is_empty()).then(|| format!("VAT {}", inv.client.vat_number));
    let mut block: Vec<String> = vec![inv.client.name.clone()];
    block.extend(company.map(String::from));
    block.extend(
        client_address
            .into_iter()
            .flat_map(|a| a.lines().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect::<Vec<_>>()),
    );
    if !inv.client.country.is_empty() {
        block.push(inv.client.country.clone());
    }
    block.push(client_email.to_string());
    block.extend(vat);
    for line in block {
        yc -= 13.0;
        l.text(MARGIN, yc, REGULAR, 9.0, &line);
    }
    l.y = yc - 30.0;
    // Lines.
    let header = |l: &mut Layout| {
        let y = l.y;
        l.text(MARGIN, y, BOLD, 9.0, "Description");
        l.text_right(WIDTH - MARGIN - 200.0, y, BOLD, 9.0, "Qty");
        l.text_right(WIDTH - MARGIN - 100.0, y, BOLD, 9.0, "Unit price");
        l.text_right(WIDTH - MARGIN, y, BOLD, 9.0, "Amount");
        l.rule(y - 5.0);
    };
    header(&mut l);
    for line in &inv.lines {
        let pages = l.pages.len();
        let y = l.down(16.0);
        if l.pages.len() != pages {
            header(&mut l);
            l.down(16.0);
        }
        let y = if l.pages.len() != pages { l.y } else { y };
        let desc: String = line.description.chars().take(60).collect();
        let qty = format!("{}.{:03}", line.quantity_milli / 1000, line.quantity_milli % 1000);
        let qty = qty.trim_end_matches('0').trim_end_matches('.').to_string();
        l.text(MARGIN, y, REGULAR, 9.0, &desc);
        l.text_right(WIDTH - MARGIN - 200.0, y, REGULAR, 9.0, &qty);
        l.text_right(WIDTH - MARGIN - 100.0, y, REGULAR, 9.0, &format_amount(line.unit_price_minor, cur));
        l.text_right(WIDTH - MARGIN, y, REGULAR, 9.0, &format_amount(line.total_minor, cur));
    }
    let y = l.down(12.0);
    l.rule(y);
    // Totals.
    let due = inv.total_minor - inv.paid_minor;
    for (k, v, font) in [
        ("Subtotal".to_string(), inv.subtotal_minor, REGULAR),
        (format!("VAT {}", format_rate(inv.vat_rate_bp)), inv.vat_minor, REGULAR),
        ("Total".to_string(), inv.total_minor, BOLD),
        ("Paid".to_string(), inv.paid_minor, REGULAR),
        ("Amount due".to_string(), due, BOLD),
    ] {
        let y = l.down(15.0);
        l.text(WIDTH - MARGIN - 200.0, y, font, 10.0, &k);
        l.text_right(WIDTH - MARGIN, y, font, 10.0, &format_amount(v, cur));
    }
    // Terms and notes.
    l.down(20.0);
    let mut tail: Vec<(Name, String)> = Vec::new();
    if !inv.payment_terms.is_empty() {
        tail.push((BOLD, "Payment terms".into()));
        tail.extend(inv.payment_terms.lines().map(|s| (REGULAR, s.to_string())));
    }
    if !inv.issuer.bank_details.is_empty() {
        tail.extend(inv.issuer.bank_details.lines().map(|s| (REGULAR, s.to_string())));
    }
    if !inv.notes.is_empty() {
        tail.push((BOLD, "Notes".into()));
        tail.extend(inv.notes.lines().map(|s| (REGULAR, s.to_string())));
    }
    for (font, s) in tail {
        let y = l.down(13.0);
        l.text(MARGIN, y, font, 9.0, &s.chars().take(100).collect::<String>());
    }

    // Assemble: catalog 1, page tree 2, fonts 3-4, info 5, then page/content pairs.
    let mut pdf = Pdf::new();
    let (catalog, tree, regular, bold, info) = (Ref::new(1), Ref::new(2), Ref::new(3), Ref::new(4), Ref::new(5));
    let page_ids: Vec<(Ref, Ref)> =
        (0..l.pages.len() as i32).map(|i| (Ref::new(6 + 2 * i), Ref::new(7 + 2 * i))).collect();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree).kids(page_ids.iter().map(|p| p.0)).count(page_ids.len() as i32);
    pdf.type1_font(regular).base_font(Name(b"Helvetica")).encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.type1_font(bold).base_font(Name(b"Helvetica-Bold")).encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.document_info(info).title(TextStr(&format!("Invoice {}", inv.number))).producer(TextStr("smartlinks api"));
    for ((page_id, content_id), content) in page_ids.iter().zip(l.pages) {
        let mut page = pdf.page(*page_id);
        page.media_box(Rect::new(0.0, 0.0, WIDTH, HEIGHT));
        page.parent(tree);
        page.contents(*content_id);
        let mut res = page.resources();
        res.fonts().pair(REGULAR, regular).pair(BOLD, bold);
        res.finish();
        page.finish();
        pdf.stream(*content_id, &content.finish());
    }
    pdf.finish()
}
