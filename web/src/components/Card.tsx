// A number card: value, label, and its change against the previous period.
export function Card({ label, value, change, testId }: { label: string; value: string; change?: string; testId?: string }) {
  const down = change?.startsWith('−');
  return (
    <div class="card" data-testid={testId}>
      <div class="card-label">{label}</div>
      <div class="card-value">{value}</div>
      {change !== undefined && (
        <div class={down ? 'card-change down' : 'card-change up'}>
          {change} <span class="sr-only">against the previous period</span>
          <span aria-hidden="true"> vs previous</span>
        </div>
      )}
    </div>
  );
}
