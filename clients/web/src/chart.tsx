// A small SVG line chart: one line per series over time, axes labelled, values in a title.
export type Point = { time: Date; value: number };
export type Series = { label: string; points: Point[] };

const COLORS = ["#2f6feb", "#d9480f", "#2b8a3e", "#9c36b5", "#e67700", "#0b7285"];

export function LineChart({ series, title }: { series: Series[]; title: string }) {
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) return null;
  const W = 640, H = 220, L = 48, R = 12, T = 12, B = 28;
  const t0 = Math.min(...all.map((p) => p.time.getTime()));
  const t1 = Math.max(...all.map((p) => p.time.getTime()));
  let v0 = Math.min(...all.map((p) => p.value));
  let v1 = Math.max(...all.map((p) => p.value));
  if (v0 === v1) {
    v0 -= 1;
    v1 += 1;
  }
  const x = (t: number) => L + (t1 === t0 ? (W - L - R) / 2 : ((t - t0) / (t1 - t0)) * (W - L - R));
  const y = (v: number) => T + (1 - (v - v0) / (v1 - v0)) * (H - T - B);
  const ticks = [v0, (v0 + v1) / 2, v1];
  return (
    <figure className="chart">
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={title}>
        <title>{title}</title>
        {ticks.map((v) => (
          <g key={v}>
            <line x1={L} x2={W - R} y1={y(v)} y2={y(v)} className="grid" />
            <text x={L - 6} y={y(v) + 4} textAnchor="end" className="axis">
              {Number(v.toPrecision(3))}
            </text>
          </g>
        ))}
        <text x={L} y={H - 8} className="axis">
          {new Date(t0).toLocaleString()}
        </text>
        <text x={W - R} y={H - 8} textAnchor="end" className="axis">
          {new Date(t1).toLocaleString()}
        </text>
        {series.map((s, i) => {
          const pts = [...s.points].sort((a, b) => a.time.getTime() - b.time.getTime());
          const color = COLORS[i % COLORS.length];
          return (
            <g key={s.label}>
              <polyline fill="none" stroke={color} strokeWidth={2} points={pts.map((p) => `${x(p.time.getTime())},${y(p.value)}`).join(" ")} />
              {pts.map((p, j) => (
                <circle key={j} cx={x(p.time.getTime())} cy={y(p.value)} r={3} fill={color}>
                  <title>{`${s.label}: ${p.value} at ${p.time.toISOString()}`}</title>
                </circle>
              ))}
            </g>
          );
        })}
      </svg>
      <figcaption>
        {series.map((s, i) => (
          <span key={s.label} className="legend">
            <span className="swatch" style={{ background: COLORS[i % COLORS.length] }} aria-hidden="true" />
            {s.label}
          </span>
        ))}
      </figcaption>
    </figure>
  );
}
