// Number, time and country formatting, in the browser's locale.
import countries from 'i18n-iso-countries';
import en from 'i18n-iso-countries/langs/en.json';

countries.registerLocale(en);

const int = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const pct = new Intl.NumberFormat(undefined, { style: 'percent', maximumFractionDigits: 1 });

/** 12345 → "12,345". */
export const n = (x: number) => int.format(x);
/** 0.123 → "12.3%". */
export const percent = (x: number) => pct.format(x);
/** Seconds → "15.4 s". */
export const seconds = (x: number) => `${x.toFixed(1)} s`;
/** Minor units → "€12.34" in `currency`. */
export const money = (minor: number, currency: string) =>
  new Intl.NumberFormat(undefined, { style: 'currency', currency }).format(minor / 100);
/** RFC 3339 → local date and time. */
export const dateTime = (iso: string) => new Date(iso).toLocaleString();
/** A change against the previous period: "+12.0%", "−3.1%", or "new". */
export function growth(now: number, before: number): string {
  if (before === 0) return now === 0 ? '0%' : 'new';
  const g = now / before - 1;
  return (g >= 0 ? '+' : '−') + pct.format(Math.abs(g));
}
/** ISO 3166 alpha-2 → English name ("FR" → "France"); other values as they are. */
export function countryName(code: string): string {
  return countries.getName(code, 'en') ?? code;
}
/** ISO 3166 alpha-2 → numeric ("FR" → "250"), the ids of the world map. */
export function countryNumeric(code: string): string | undefined {
  return countries.alpha2ToNumeric(code);
}
