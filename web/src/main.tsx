// The dashboard's shell: sign-in, navigation, the tenant in view, and the
// pages by the URL's fragment (`#/overview`, `#/links/{id}/analytics`…).
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { can, get, logout, whenSignedOut, whoAmI, type Tenant, type Who } from './api';
import type { Ctx } from './context';
import { message } from './hooks';
import { Agency } from './pages/Agency';
import { Campaigns } from './pages/Campaigns';
import { Health } from './pages/Health';
import { LinkEdit } from './pages/LinkEdit';
import { Links } from './pages/Links';
import { Login } from './pages/Login';
import { Overview } from './pages/Overview';
import { Realtime } from './pages/Realtime';
import './style.css';

const TENANT = 'smartlinks.tenant';

function useHash(): string {
  const [hash, setHash] = useState(location.hash.slice(1) || '/overview');
  useEffect(() => {
    const on = () => setHash(location.hash.slice(1) || '/overview');
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return hash;
}

function App() {
  const [who, setWho] = useState<Who | null | undefined>(undefined);
  const [error, setError] = useState<string>();
  useEffect(() => {
    whenSignedOut(() => setWho(null));
    whoAmI().then(setWho, () => setWho(null));
  }, []);
  if (who === undefined) return <p class="muted center">Loading…</p>;
  if (who === null) return <Login onSignedIn={setWho} />;
  return (
    <>
      {error && <p role="alert" class="error">{error}</p>}
      <Shell
        who={who}
        onSignOut={() =>
          logout().then(
            () => setWho(null),
            (e) => setError(message(e)),
          )
        }
      />
    </>
  );
}

function Shell({ who, onSignOut }: { who: Who; onSignOut: () => void }) {
  const route = useHash();
  const [tenants, setTenants] = useState<Tenant[]>([]);
  const [clientId, setClientId] = useState<string | undefined>(
    who.kind === 'user' ? who.user.client_id : (sessionStorage.getItem(TENANT) ?? undefined),
  );
  const [tenant, setTenant] = useState<Tenant>();
  const [menu, setMenu] = useState(false);
  useEffect(() => {
    if (who.kind === 'operator') get<Tenant[]>('/v1/clients').then(setTenants, () => setTenants([]));
  }, [who]);
  useEffect(() => {
    setTenant(undefined);
    if (clientId) get<Tenant>(`/v1/clients/${clientId}`).then(setTenant, () => setTenant(undefined));
  }, [clientId]);
  useEffect(() => setMenu(false), [route]);
  const pick = (id: string) => {
    sessionStorage.setItem(TENANT, id);
    setClientId(id);
  };
  const ctx: Ctx = { who, clientId, tenant };

  const nav: { href: string; label: string; show: boolean }[] = [
    { href: '#/agency', label: 'Agency', show: who.kind === 'operator' },
    { href: '#/overview', label: 'Overview', show: can(who, 'analytics:read') },
    { href: '#/realtime', label: 'Realtime', show: can(who, 'analytics:read') },
    { href: '#/links', label: 'Links', show: can(who, 'links:read') },
    { href: '#/campaigns', label: 'Campaigns', show: can(who, 'campaigns:read') },
    { href: '#/health', label: 'Tracking health', show: can(who, 'analytics:read') },
  ];
  const current = '#' + route.split('?')[0];
  const needsTenant = !route.startsWith('/agency') && !clientId;

  return (
    <div class="shell">
      <a class="skip" href="#main" onClick={(e) => (e.preventDefault(), document.getElementById('main')?.focus())}>
        Skip to content
      </a>
      <header class="top">
        <span class="brand">Smartlinks</span>
        <button type="button" class="menu-button" aria-expanded={menu} aria-controls="nav" onClick={() => setMenu(!menu)}>
          Menu
        </button>
        <nav id="nav" class={menu ? 'open' : ''} aria-label="Main">
          <ul>
            {nav
              .filter((i) => i.show)
              .map((i) => (
                <li key={i.href}>
                  <a href={i.href} aria-current={current.startsWith(i.href) ? 'page' : undefined}>
                    {i.label}
                  </a>
                </li>
              ))}
          </ul>
        </nav>
        <div class="who">
          {who.kind === 'operator' ? (
            <label>
              Tenant{' '}
              <select value={clientId ?? ''} onChange={(e) => pick((e.target as HTMLSelectElement).value)} data-testid="tenant-picker">
                <option value="" disabled>
                  choose…
                </option>
                {tenants.map((t) => (
                  <option value={t.id} key={t.id}>
                    {t.name}
                  </option>
                ))}
              </select>
            </label>
          ) : (
            <span data-testid="whoami">
              {who.user.first_name} {who.user.last_name} · {tenant?.name ?? ''} · <em>{who.user.role}</em>
            </span>
          )}
          <button type="button" onClick={onSignOut}>
            Sign out
          </button>
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        {needsTenant ? <p class="muted">Choose a tenant above, or open the agency view.</p> : page(route, ctx, tenants, pick)}
      </main>
    </div>
  );
}

function page(route: string, ctx: Ctx, tenants: Tenant[], pick: (id: string) => void) {
  const parts = route.split('?')[0].split('/').filter(Boolean);
  switch (parts[0]) {
    case 'agency':
      return ctx.who.kind === 'operator' ? <Agency tenants={tenants} pick={pick} /> : <NotAllowed />;
    case 'realtime':
      return <Realtime ctx={ctx} />;
    case 'links':
      if (parts[1] === 'new') return can(ctx.who, 'links:create') ? <LinkEdit ctx={ctx} /> : <NotAllowed />;
      if (parts[1] && parts[2] === 'analytics') return <Overview ctx={ctx} linkId={parts[1]} key={parts[1]} />;
      if (parts[1]) return can(ctx.who, 'links:update') ? <LinkEdit ctx={ctx} id={parts[1]} key={parts[1]} /> : <NotAllowed />;
      return <Links ctx={ctx} />;
    case 'campaigns':
      return <Campaigns ctx={ctx} />;
    case 'health':
      return <Health ctx={ctx} />;
    default:
      return <Overview ctx={ctx} key={ctx.clientId} />;
  }
}

function NotAllowed() {
  return (
    <p role="alert" class="error">
      Your role does not allow this page.
    </p>
  );
}

render(<App />, document.getElementById('root')!);
