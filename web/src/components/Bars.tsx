// A ranked list with proportional bars: one breakdown dimension.
import { n, percent } from '../format';

interface Props {
  title: string;
  items: { value: string; count: number; share: number }[];
  /** How a value is shown (country names, platform labels). */
  label?: (v: string) => string;
  metric: string;
}

export function Bars({ title, items, label = (v) => v || '(none)', metric }: Props) {
  return (
    <section class="panel" aria-label={title}>
      <h3>{title}</h3>
      {items.length === 0 ? (
        <p class="muted">No data in this range.</p>
      ) : (
        <table class="bars">
          <thead>
            <tr>
              <th scope="col">{title}</th>
              <th scope="col" class="num">{metric}</th>
              <th scope="col" class="num">Share</th>
            </tr>
          </thead>
          <tbody>
            {items.map((it) => (
              <tr key={it.value}>
                <td>
                  <span class="bar" style={{ width: `${Math.max(2, it.share * 100).toFixed(1)}%` }} />
                  <span class="bar-label">{label(it.value)}</span>
                </td>
                <td class="num">{n(it.count)}</td>
                <td class="num">{percent(it.share)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
