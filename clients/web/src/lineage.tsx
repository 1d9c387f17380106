// The lineage graph as SVG: columns by depth along the edges (datasets and code, runs,
// versions, deployments), each node a labelled box, each edge a curve with an arrow.
import { hrefOf, navigate } from "./router";
import type { LineageEdge, LineageNode } from "./gen/modelreg/metadata/v1/lineage_pb";
import { LineageEdgeType, LineageNodeType } from "./gen/modelreg/metadata/v1/lineage_pb";

const NODE_W = 190, NODE_H = 46, COL_GAP = 80, ROW_GAP = 18, PAD = 16;

export function layers(nodes: LineageNode[], edges: LineageEdge[]): Map<string, number> {
  const layer = new Map(nodes.map((n) => [n.name, 0]));
  // Longest path from the sources, bounded so that a cycle cannot loop forever.
  for (let round = 0; round < nodes.length; round++) {
    let changed = false;
    for (const e of edges) {
      const s = layer.get(e.source), t = layer.get(e.target);
      if (s === undefined || t === undefined) continue;
      if (t < s + 1) {
        layer.set(e.target, s + 1);
        changed = true;
      }
    }
    if (!changed) break;
  }
  return layer;
}

const TYPE_LABEL: Record<number, string> = {
  [LineageNodeType.DATASET]: "dataset",
  [LineageNodeType.CODE]: "code",
  [LineageNodeType.RUN]: "run",
  [LineageNodeType.MODEL_VERSION]: "model version",
  [LineageNodeType.DEPLOYMENT]: "deployment",
};

function truncate(text: string, n: number): string {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}

function labelOf(n: LineageNode): string {
  const version = /^models\/([^/]+)\/versions\/(\d+)$/.exec(n.name);
  if (version) return `${version[1]} v${version[2]}`;
  const text = n.displayName || n.name;
  // URLs and resource paths: their last segment is the part that tells nodes apart.
  return text.includes("/") && n.type !== LineageNodeType.DATASET ? text.split("/").filter(Boolean).pop() ?? text : text;
}

export function LineageGraph({ nodes, edges, start }: { nodes: LineageNode[]; edges: LineageEdge[]; start: string }) {
  const layer = layers(nodes, edges);
  const columns: LineageNode[][] = [];
  for (const n of nodes) {
    const l = layer.get(n.name) ?? 0;
    (columns[l] ??= []).push(n);
  }
  const pos = new Map<string, { x: number; y: number }>();
  columns.forEach((col, c) =>
    col
      .sort((a, b) => a.type - b.type || a.name.localeCompare(b.name))
      .forEach((n, r) => pos.set(n.name, { x: PAD + c * (NODE_W + COL_GAP), y: PAD + r * (NODE_H + ROW_GAP) })),
  );
  const rows = Math.max(1, ...columns.map((c) => c?.length ?? 0));
  const width = PAD * 2 + columns.length * NODE_W + Math.max(0, columns.length - 1) * COL_GAP;
  const height = PAD * 2 + rows * NODE_H + (rows - 1) * ROW_GAP;
  return (
    <svg className="lineage" viewBox={`0 0 ${width} ${height}`} width={width} height={height} role="img" aria-label={`Lineage of ${start}`} data-testid="lineage-graph">
      <defs>
        <marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
          <path d="M0,0 L10,5 L0,10 z" className="arrowhead" />
        </marker>
      </defs>
      {edges.map((e, i) => {
        const a = pos.get(e.source), b = pos.get(e.target);
        if (!a || !b) return null;
        const x1 = a.x + NODE_W, y1 = a.y + NODE_H / 2, x2 = b.x, y2 = b.y + NODE_H / 2;
        const mid = (x1 + x2) / 2;
        return (
          <path key={i} className={`edge edge-${LineageEdgeType[e.type]?.toLowerCase()}`} d={`M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`} markerEnd="url(#arrow)">
            <title>{`${e.source} → ${e.target} (${LineageEdgeType[e.type]?.toLowerCase().replace(/_/g, " ")})`}</title>
          </path>
        );
      })}
      {nodes.map((n) => {
        const p = pos.get(n.name)!;
        const href = hrefOf(n.name);
        const label = labelOf(n);
        return (
          <g
            key={n.name}
            className={`node node-${LineageNodeType[n.type]?.toLowerCase()}${n.name === start ? " start" : ""}${href ? " linked" : ""}`}
            transform={`translate(${p.x},${p.y})`}
            data-node={n.name}
            tabIndex={href ? 0 : undefined}
            role={href ? "link" : undefined}
            onClick={href ? () => navigate(href) : undefined}
            onKeyDown={href ? (e) => e.key === "Enter" && navigate(href) : undefined}
          >
            <title>{[n.name, ...Object.entries(n.properties).map(([k, v]) => `${k}: ${v}`)].join("\n")}</title>
            <rect width={NODE_W} height={NODE_H} rx={8} />
            <text x={10} y={17} className="kind">
              {TYPE_LABEL[n.type] ?? "node"}
            </text>
            <text x={10} y={35} className="label">
              {truncate(label, 23)}
            </text>
          </g>
        );
      })}
    </svg>
  );
}
