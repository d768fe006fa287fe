// Campaigns: the ad platforms' numbers (entered KPIs) beside our click-outs
// for the campaign's links, per day (GET /v1/campaigns/{id}/performance).
import { useState } from 'preact/hooks';
import { get, type Campaign, type Performance } from '../api';
import { Card } from '../components/Card';
import { scope, type Ctx } from '../context';
import { money, n } from '../format';
import { useLoad } from '../hooks';

export function Campaigns({ ctx }: { ctx: Ctx }) {
  const list = useLoad(() => get<Campaign[]>('/v1/campaigns', scope(ctx)), [ctx.clientId]);
  const [chosen, setChosen] = useState<string>();
  const id = chosen ?? list.data?.[0]?.id;
  const perf = useLoad(() => (id ? get<Performance>(`/v1/campaigns/${id}/performance`) : Promise.resolve(undefined)), [id]);
  const p = perf.data;
  return (
    <div>
      <div class="page-head">
        <h1>Campaigns</h1>
        {list.data && list.data.length > 0 && (
          <label>
            Campaign{' '}
            <select value={id} onChange={(e) => setChosen((e.target as HTMLSelectElement).value)}>
              {list.data.map((c) => (
                <option value={c.id} key={c.id}>
                  {c.name} ({c.status})
                </option>
              ))}
            </select>
          </label>
        )}
      </div>
      {list.error && <p role="alert" class="error">{list.error}</p>}
      {list.data && list.data.length === 0 && <p class="muted">No campaign yet.</p>}
      {perf.error && <p role="alert" class="error">{perf.error}</p>}
      {p && (
        <>
          <div class="cards">
            <Card label="Ad spend" value={money(p.total.ad.spend_minor, p.currency)} />
            <Card label="Ad impressions" value={n(p.total.ad.impressions)} />
            <Card label="Ad clicks" value={n(p.total.ad.clicks)} />
            <Card testId="campaign-views" label="Landing views (ours)" value={n(p.total.pipeline.views)} />
            <Card testId="campaign-clicks" label="Stream click-outs (ours)" value={n(p.total.pipeline.stream_clicks)} />
            <Card
              label="Cost per stream click"
              value={p.total.cost_per_stream_click_minor === null ? '—' : money(p.total.cost_per_stream_click_minor, p.currency)}
            />
          </div>
          <section class="panel">
            <h2>Per day</h2>
            <div class="scroll">
              <table class="bars">
                <thead>
                  <tr>
                    <th scope="col">Day</th>
                    <th scope="col" class="num">Spend</th>
                    <th scope="col" class="num">Impressions</th>
                    <th scope="col" class="num">Ad clicks</th>
                    <th scope="col" class="num">Our views</th>
                    <th scope="col" class="num">Our click-outs</th>
                    <th scope="col" class="num">Cost / click-out</th>
                  </tr>
                </thead>
                <tbody>
                  {p.days.map((d) => (
                    <tr key={d.date}>
                      <td>{d.date}</td>
                      <td class="num">{money(d.ad.spend_minor, p.currency)}</td>
                      <td class="num">{n(d.ad.impressions)}</td>
                      <td class="num">{n(d.ad.clicks)}</td>
                      <td class="num">{n(d.pipeline.views)}</td>
                      <td class="num">{n(d.pipeline.stream_clicks)}</td>
                      <td class="num">{d.cost_per_stream_click_minor === null ? '—' : money(d.cost_per_stream_click_minor, p.currency)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          </section>
        </>
      )}
    </div>
  );
}
