// The API client: same origin (the api serves this app under /app/), a
// bearer token kept in sessionStorage (a session `sls_…` from
// POST /v1/auth/login, or the operator key), JSON errors as ApiError.

/** An error the API answered (`{"error": {"code", "message", "field"}}`). */
export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
    public field?: string,
  ) {
    super(message);
  }
}

const TOKEN = 'smartlinks.token';

/** Who is signed in: a back-office user, or the operator (its key). */
export type Who =
  | { kind: 'user'; user: User }
  | { kind: 'operator' };

export interface User {
  id: string;
  client_id: string;
  email: string;
  first_name: string;
  last_name: string;
  role: string;
  permissions: string[];
  totp_enabled: boolean;
}

export function token(): string | null {
  return sessionStorage.getItem(TOKEN);
}

export function setToken(t: string | null) {
  if (t) sessionStorage.setItem(TOKEN, t);
  else sessionStorage.removeItem(TOKEN);
}

/** Called when a request answers 401: the session ended. */
let onSignedOut: () => void = () => {};
export function whenSignedOut(f: () => void) {
  onSignedOut = f;
}

async function request(method: string, path: string, body?: unknown): Promise<Response> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!resp.ok) {
    let code = 'http_' + resp.status;
    let message = resp.statusText;
    let field: string | undefined;
    try {
      const e = (await resp.json()).error;
      code = e.code;
      message = e.message;
      field = e.field;
    } catch {
      /* not JSON */
    }
    if (resp.status === 401 && t && path !== '/v1/auth/login') onSignedOut();
    throw new ApiError(resp.status, code, message, field);
  }
  return resp;
}

/** `GET path` with `query` (undefined values left out), as JSON. */
export async function get<T>(path: string, query: Record<string, string | number | undefined> = {}): Promise<T> {
  return (await request('GET', withQuery(path, query))).json();
}

/** `GET path` as a Blob (CSV export, QR code). */
export async function blob(path: string, query: Record<string, string | number | undefined> = {}): Promise<Blob> {
  return (await request('GET', withQuery(path, query))).blob();
}

export async function send<T>(method: 'POST' | 'PATCH' | 'PUT' | 'DELETE', path: string, body?: unknown): Promise<T> {
  const resp = await request(method, path, body);
  return resp.status === 204 ? (undefined as T) : resp.json();
}

export function withQuery(path: string, query: Record<string, string | number | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

/** Signs in with email, password and (when the account has one) a TOTP code. */
export async function login(email: string, password: string, totp_code?: string): Promise<User> {
  const r = await send<{ token: string; user: User }>('POST', '/v1/auth/login', { email, password, totp_code: totp_code || undefined });
  setToken(r.token);
  return (await get<User>('/v1/users/me'));
}

/** Who the stored token belongs to, or null when there is none or it ended. */
export async function whoAmI(): Promise<Who | null> {
  const t = token();
  if (!t) return null;
  if (!t.startsWith('sls_')) {
    // The operator key: only it may list every tenant.
    await get('/v1/clients');
    return { kind: 'operator' };
  }
  return { kind: 'user', user: await get<User>('/v1/users/me') };
}

export async function logout() {
  if (token()?.startsWith('sls_')) {
    try {
      await send('POST', '/v1/auth/logout');
    } catch {
      /* already ended */
    }
  }
  setToken(null);
}

/** Whether `who` may do `permission` (`links:create`): the operator may do everything. */
export function can(who: Who, permission: string): boolean {
  return who.kind === 'operator' || who.user.permissions.includes(permission);
}

// ---- Answers (the OpenAPI document at /v1/openapi.json has every field) ----

export interface Count {
  value: string;
  count: number;
}
export interface Overview {
  window: { client_id: string; smartlink_id?: string; from: string; to: string };
  views: number;
  clicks: number;
  unique_visitors: number;
  returning_visitors: number;
  conversions: number;
  conversion_rate: number;
  bots: number;
  engaged_views: number;
  avg_time_on_page_s: number;
  bounce_rate: number;
  conversion_value_minor: number;
  top_countries: Count[];
  top_platforms: Count[];
}
export interface Point {
  start: string;
  views: number;
  clicks: number;
  unique_visitors: number;
}
export interface Timeseries {
  interval: string;
  points: Point[];
}
export interface Breakdown {
  dimension: string;
  metric: string;
  total: number;
  items: { value: string; country?: string; count: number; share: number }[];
}
export interface Realtime {
  at: string;
  active_visitors: number;
  views_last_30_min: number;
  per_minute: { minute: string; views: number; clicks: number }[];
}
export interface Health {
  status: string;
  views: number;
  server_tracking_rate: number;
  client_tracking_rate: number;
  recovered_by_server: number;
  pixels_configured: boolean;
  consent: Record<string, number>;
  dnt: number;
  bots: number;
  last_event_at?: string;
  ingest_delay_p50_s: number;
  ingest_delay_p99_s: number;
  rollups_until?: string;
}
export interface Link {
  id: string;
  client_id: string;
  slug: string;
  url: string;
  status: string;
  tags: string[];
  track: { title: string; artist_name: string; album_name?: string };
  platforms: Record<string, string>;
  media: { cover_art?: string };
  stats: Record<string, number>;
  created_at: string;
}
export interface Tenant {
  id: string;
  name: string;
  domain?: string;
  subdomain?: string;
  branding?: { primary_color?: string; secondary_color?: string };
}
export interface Campaign {
  id: string;
  name: string;
  status: string;
  kind: string;
  start_date?: string;
  end_date?: string;
}
export interface AdTotals {
  impressions: number;
  clicks: number;
  spend_minor: number;
  conversions: number;
}
export interface DayPerformance {
  date: string;
  ad: AdTotals;
  pipeline: { views: number; stream_clicks: number; conversions: number };
  cost_per_stream_click_minor: number | null;
}
export interface Performance {
  currency: string;
  smartlink_ids: string[];
  days: DayPerformance[];
  total: DayPerformance;
}
export interface Agency {
  views: number;
  clicks: number;
  previous_views: number;
  views_growth: number | null;
  tenant_count: number;
  top_tenants: { client_id: string; name: string; views: number; clicks: number; conversion_rate: number; previous_views: number; views_growth: number | null }[];
  top_links: { smartlink_id: string; client_id: string; views: number; clicks: number; previous_views: number }[];
}
