// The agency view (operator; seed 002 "Vue MDMC Master"): every tenant's
// views and click-outs over the range against the previous period.
import { useState } from 'preact/hooks';
import { get, type Agency as AgencyData, type Tenant } from '../api';
import { Card } from '../components/Card';
import { RangePicker } from '../components/RangePicker';
import { growth, n, percent } from '../format';
import { useLoad } from '../hooks';
import { preset, query, type Range } from '../range';

export function Agency({ tenants, pick }: { tenants: Tenant[]; pick: (id: string) => void }) {
  const [range, setRange] = useState<Range>(() => preset('7d'));
  const a = useLoad(() => get<AgencyData>('/v1/analytics/agency', { ...query(range), top: 50 }), [range.from.getTime(), range.to.getTime()]);
  const name = (id: string) => tenants.find((t) => t.id === id)?.name ?? id;
  return (
    <div>
      <div class="page-head">
        <h1>Agency view</h1>
        <div class="toolbar">
          <RangePicker range={range} onChange={setRange} />
        </div>
      </div>
      {a.error && <p role="alert" class="error">{a.error}</p>}
      {a.data && (
        <>
          <div class="cards">
            <Card testId="agency-views" label="Views, all tenants" value={n(a.data.views)} change={growth(a.data.views, a.data.previous_views)} />
            <Card label="Click-outs, all tenants" value={n(a.data.clicks)} />
            <Card label="Tenants with traffic" value={n(a.data.tenant_count)} />
          </div>
          <section class="panel">
            <h2>Tenants</h2>
            <table class="bars">
              <thead>
                <tr>
                  <th scope="col">Tenant</th>
                  <th scope="col" class="num">Views</th>
                  <th scope="col" class="num">Change</th>
                  <th scope="col" class="num">Click-outs</th>
                  <th scope="col" class="num">CTR</th>
                </tr>
              </thead>
              <tbody>
                {a.data.top_tenants.map((t) => (
                  <tr key={t.client_id}>
                    <td>
                      <button type="button" class="linkish" onClick={() => pick(t.client_id)}>
                        {t.name}
                      </button>
                    </td>
                    <td class="num">{n(t.views)}</td>
                    <td class="num">{growth(t.views, t.previous_views)}</td>
                    <td class="num">{n(t.clicks)}</td>
                    <td class="num">{percent(t.conversion_rate)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </section>
          <section class="panel">
            <h2>Top links</h2>
            <table class="bars">
              <thead>
                <tr>
                  <th scope="col">Link</th>
                  <th scope="col">Tenant</th>
                  <th scope="col" class="num">Views</th>
                  <th scope="col" class="num">Click-outs</th>
                </tr>
              </thead>
              <tbody>
                {a.data.top_links.map((l) => (
                  <tr key={l.smartlink_id}>
                    <td>
                      <a href={`#/links/${l.smartlink_id}/analytics`} onClick={() => pick(l.client_id)}>
                        {l.smartlink_id}
                      </a>
                    </td>
                    <td>{name(l.client_id)}</td>
                    <td class="num">{n(l.views)}</td>
                    <td class="num">{n(l.clicks)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </section>
        </>
      )}
    </div>
  );
}
