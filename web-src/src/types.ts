// Wire types of the user API, mirroring src/computenet/protocol/api.py.
// Decimals arrive as strings (exact ¥), datetimes as ISO-8601 strings.

export type Decimal = string;
export type ISODate = string;

export const JOB_STATES = [
  "PENDING",
  "SCHEDULED",
  "STAGING",
  "RUNNING",
  "SUCCEEDED",
  "FAILED",
  "CANCELLED",
] as const;
export type JobState = (typeof JOB_STATES)[number];
export const TERMINAL: ReadonlySet<string> = new Set(["SUCCEEDED", "FAILED", "CANCELLED"]);

export interface ErrorBody {
  error: string;
  field?: string | null;
  hint?: string | null;
}

export interface WhoAmI {
  subject: string;
  role: string;
  tenant?: string | null;
  center?: string | null;
}

export interface ChipRequest {
  count?: number;
  types?: string[];
  stack?: string | null;
  memory_gb?: number | null;
}

export interface JobSpec {
  name?: string;
  class: string;
  command: string;
  chips?: ChipRequest;
  work: Record<string, unknown>;
  inputs?: string[];
  deadline?: string | null;
  budget_cny?: Decimal | null;
  priority?: number;
  latency_class?: string;
  env?: Record<string, string>;
  [extra: string]: unknown;
}

export interface JobView {
  id: string;
  name: string;
  tenant: string;
  workload_class: string;
  state: JobState;
  submitted_at: ISODate;
  deadline?: ISODate | null;
  center?: string | null;
  chip?: string | null;
  chips: number;
  attempts: number;
  estimated_cny?: Decimal | null;
  cost_cny?: Decimal | null;
  exit_code?: number | null;
  reasons: string[];
}

export interface CostBreakdown {
  energy_cny: Decimal;
  service_cny: Decimal;
  transfer_cny: Decimal;
}

export interface Placement {
  center: string;
  chip: string;
  count: number;
  planned_start: ISODate;
  transfer_s: number;
  run_s: number;
  finish: ISODate;
  cost: CostBreakdown;
  kwh: number;
  co2_kg: number;
  cu_hours: number;
  source_replicas?: Record<string, string>;
  reasons: string[];
}

export interface JobEvent {
  at: ISODate;
  state?: JobState | null;
  message: string;
  center?: string | null;
}

/** One level of a job's path down a federation (JobDetail.path; docs/federation.md). */
export interface PathHop {
  network: string;
  center?: string | null;
  chip?: string | null;
  count?: number | null;
  job_id?: string | null;
  state?: string | null;
  reason?: string | null;
  position?: number | null;
}

export interface JobDetail extends JobView {
  spec: JobSpec;
  placement?: Placement | null;
  started_at?: ISODate | null;
  finished_at?: ISODate | null;
  wait_s?: number | null;
  transfer_s?: number | null;
  run_s?: number | null;
  usage: Record<string, number | string>;
  events: JobEvent[];
  queue_position?: number | null;
  /** This plane's placement first, then each region below it (absent from older servers). */
  path?: PathHop[] | null;
}

export interface LogChunk {
  text: string;
  offset: number;
  next_offset: number;
  complete: boolean;
}

export interface QuoteOption {
  center: string;
  chip: string;
  count: number;
  planned_start: ISODate;
  finish: ISODate;
  energy_cny: Decimal;
  service_cny: Decimal;
  transfer_cny: Decimal;
  total_cny: Decimal;
  kwh: number;
  co2_kg: number;
  transfer_s: number;
  run_s: number;
  cheapest: boolean;
  fastest: boolean;
  feasible: boolean;
  reasons: string[];
  /** What the tenant's compute vouchers would pay, and the price after them. */
  subsidy_cny?: Decimal;
  paid_cny?: Decimal | null;
}

export interface QuoteView {
  options: QuoteOption[];
  infeasible_reasons: string[];
  now: ISODate;
}

/** A pool as CenterView.pools carries it: chip, total (or count) and free. */
export interface PoolView {
  chip: string;
  total?: number;
  count?: number;
  free?: number;
  [extra: string]: number | string | undefined;
}

export interface CenterView {
  id: string;
  name: string;
  hub: string;
  region: string;
  lat: number;
  lon: number;
  backend: string;
  online: boolean;
  last_heartbeat?: ISODate | null;
  pools: PoolView[];
  pue: number;
  tariff_now: Decimal;
  tariff_hourly: Decimal[];
  carbon_kg_per_kwh: number;
  service_price_per_cuh: Decimal;
  queued: number;
  running: number;
  identifier?: string | null;
  tags?: string[];
  /** A region's own centers, as its network agent last reported them (absent otherwise). */
  members?: MemberView[];
}

/** A center inside a region, as far as the parent plane can show it. */
export interface MemberView {
  id: string;
  name?: string;
  lat: number;
  lon: number;
  online?: boolean;
  pools?: PoolView[];
}

/** GET /api/v1/resolve/{identifier}: only what the dashboard reads. */
export interface ResolveView {
  identifier: string;
  kind: string;
  reach: { url: string; network: string; center?: string | null; region_url?: string | null };
}

export interface SiteView {
  id: string;
  name?: string;
  lat: number;
  lon: number;
  region?: string;
}

/** A link; `traffic_gbps` and `transfers` are proposed additions (see docs/dashboard.md). */
export interface LinkView {
  a: string;
  b: string;
  bandwidth_gbps: number;
  latency_ms: number;
  price_per_gb: Decimal | number;
  traffic_gbps?: number;
  transfers?: number;
}

export interface NetworkView {
  name: string;
  time_scale: number;
  data_scale: number;
  centers: Partial<CenterView>[];
  sites: SiteView[];
  links: LinkView[];
  now: ISODate;
}

export interface BillLine {
  job_id: string;
  job_name: string;
  center: string;
  chip: string;
  chips: number;
  started_at?: ISODate | null;
  finished_at?: ISODate | null;
  chip_hours: number;
  cu_hours: number;
  kwh: number;
  co2_kg: number;
  energy_cny: Decimal;
  service_cny: Decimal;
  transfer_cny: Decimal;
  total_cny: Decimal;
  /** What each compute voucher paid of this line, and what the tenant pays. */
  subsidies?: SubsidyLineView[];
  subsidy_cny?: Decimal;
  paid_cny?: Decimal | null;
}

/** A compute voucher (算力券) and its balance: GET /api/v1/vouchers, BillView.vouchers. */
export interface VoucherView {
  id: number;
  tenant: string;
  issuer: string;
  pct: Decimal;
  cap_cny: Decimal;
  used_cny: Decimal;
  remaining_cny: Decimal;
  centers: string[];
  classes: string[];
  valid_from: ISODate;
  valid_until: ISODate;
  issued_at: ISODate;
  issued_by: string;
  state?: "active" | "not yet valid" | "expired" | "spent" | null;
}

export interface SubsidyLineView {
  voucher_id: number;
  issuer: string;
  amount_cny: Decimal;
}

export interface BillView {
  tenant: string;
  period: string;
  lines: BillLine[];
  by_center: Record<string, Decimal>;
  energy_cny: Decimal;
  service_cny: Decimal;
  transfer_cny: Decimal;
  total_cny: Decimal;
  kwh: number;
  co2_kg: number;
  cu_hours: number;
  subsidy_cny?: Decimal;
  paid_cny?: Decimal | null;
  vouchers?: VoucherView[];
}

/** Proposed: GET /api/v1/sim/reports (one entry per `cnet sim compare --out DIR`). */
export interface SimReportSummary {
  id: string;
  name?: string;
  created_at?: ISODate | null;
  network?: string | null;
  workload?: string | null;
  policies?: string[];
  bound_cny?: Decimal | number | null;
}

/** Proposed: GET /api/v1/sim/reports/{id}: the summary plus `cnet sim compare --json`'s object. */
export interface SimReport extends SimReportSummary {
  result?: { policies?: Record<string, unknown>[]; bound_cny?: Decimal | number | null; [k: string]: unknown };
  html_url?: string | null;
}

// Tenancy (GET /api/v1/tenancy; protocol/tenancy.py).
export interface QuotaView {
  tenant: string;
  kind: "chips" | "cu_hours" | "cny";
  chip: string | null;
  period: "day" | "month" | null;
  limit: string;
  used: string;
  label: string;
}

export interface TenancyView {
  tenant: string;
  weight: number;
  priority_ceiling: number | null;
  quotas: QuotaView[];
  usage_cu_hours: number;
  share: number;
  used_share: number;
  half_life_days: number;
}

// Inference services (src/computenet/protocol/services.py, service_stats.py).

export interface ReplicaView {
  job_id: string;
  slot: number;
  state: JobState;
  center?: string | null;
  endpoint?: string | null;
  ready: boolean;
  chip?: string | null;
}

export interface ServiceView {
  name: string;
  tenant: string;
  spec: {
    chips?: ChipRequest;
    replicas: { min: number; max: number };
    target_inflight: number;
    latency: { p99_ttfb_ms: number };
    budget_cny_per_hour?: number | string | null;
  };
  wanted: number;
  ready: number;
  created_at: ISODate;
  replicas: ReplicaView[];
}

export interface MetricsPoint {
  t: ISODate;
  requests: number;
  requests_per_s: number;
  errors: number;
  p50_ttfb_ms: number | null;
  p99_ttfb_ms: number | null;
  p50_latency_ms: number | null;
  p99_latency_ms: number | null;
  bytes_in: number;
  bytes_out: number;
  replicas: number;
  cost_cny_per_hour: number;
}

export interface MetricsTotals {
  requests: number;
  errors: number;
  error_rate: number;
  p50_ttfb_ms: number | null;
  p99_ttfb_ms: number | null;
  p50_latency_ms: number | null;
  p99_latency_ms: number | null;
  bytes_in: number;
  bytes_out: number;
  replicas: number;
  cost_cny_per_hour: Decimal;
  cost_cny: Decimal;
  cu_hours: number;
  cny_per_1k_requests: number | null;
  cu_hours_per_request: number | null;
}

export interface ServiceMetrics {
  name: string;
  minutes: number;
  series: MetricsPoint[];
  totals: MetricsTotals;
}
