// The range picker: presets, or two days (UTC) of the user's choice.
import { useState } from 'preact/hooks';
import { PRESETS, custom, day, preset, type Range } from '../range';

export function RangePicker({ range, onChange }: { range: Range; onChange: (r: Range) => void }) {
  const [from, setFrom] = useState(day(range.from));
  const [to, setTo] = useState(day(new Date(range.to.getTime() - 1)));
  return (
    <form
      class="range"
      onSubmit={(e) => {
        e.preventDefault();
        if (from && to && from <= to) onChange(custom(from, to));
      }}
    >
      <label>
        Range
        <select
          value={range.preset}
          onChange={(e) => {
            const v = (e.target as HTMLSelectElement).value;
            if (v !== 'custom') onChange(preset(v));
          }}
        >
          {PRESETS.map((p) => (
            <option value={p.id} key={p.id}>
              {p.label}
            </option>
          ))}
          <option value="custom">Custom days</option>
        </select>
      </label>
      <label>
        From
        <input type="date" value={from} onInput={(e) => setFrom((e.target as HTMLInputElement).value)} />
      </label>
      <label>
        To
        <input type="date" value={to} onInput={(e) => setTo((e.target as HTMLInputElement).value)} />
      </label>
      <button type="submit">Apply</button>
    </form>
  );
}
