// Bills page: a tenant's bill for a month, charted by center and by energy / service / transfer;
// with compute vouchers (算力券), what each paid per job, what the tenant pays, and their balances.

import { api, qs } from "../api";
import { type Kind, KINDS, StackedBars } from "../charts";
import { Empty, ErrorBox, LiveNote, Loading, Section, Stat } from "../components";
import { cny, dec, fmtNum, period, shortTime } from "../format";
import { href, navigate, usePoll } from "../hooks";
import { useSession } from "../session";
import { Tenancy } from "../tenancy";
import type { BillView, VoucherView } from "../types";

export function BillsPage({ query }: { query: URLSearchParams }) {
  const { me, network } = useSession();
  const admin = me.role === "admin";
  const per = query.get("period") || period(network.data?.now);
  const tenant = admin ? (query.get("tenant") ?? "") : "";
  const bill = usePoll(
    (signal) => api<BillView>(`/api/v1/bill${qs({ period: per, tenant: tenant || undefined })}`, { signal }),
    `bill:${per}:${tenant}`,
  );
  const set = (k: string, v: string) => navigate("bills", { period: per, tenant: tenant || undefined, [k]: v || undefined }, true);
  const b = bill.data;
  const subsidised = (b?.lines ?? []).some((l) => (l.subsidies ?? []).length > 0);

  // Per center, split by kind, from the lines (by_center carries only totals).
  const byCenter = new Map<string, Record<Kind, number>>();
  for (const l of b?.lines ?? []) {
    const row = byCenter.get(l.center) ?? { energy: 0, service: 0, transfer: 0 };
    row.energy += dec(l.energy_cny);
    row.service += dec(l.service_cny);
    row.transfer += dec(l.transfer_cny);
    byCenter.set(l.center, row);
  }
  for (const [c, total] of Object.entries(b?.by_center ?? {})) {
    // A center with a total but no lines (shouldn't happen) still shows, as service.
    if (!byCenter.has(c) && dec(total) > 0) byCenter.set(c, { energy: 0, service: dec(total), transfer: 0 });
  }
  const centerRows = [...byCenter.entries()]
    .map(([label, parts]) => ({ label, parts, total: b?.by_center[label] }))
    .sort((x, y) => KINDS.reduce((s, k) => s + y.parts[k] - x.parts[k], 0));

  return (
    <div class="page">
      <div class="page-head">
        <h1>Bills</h1>
        <LiveNote updatedAt={bill.updatedAt} error={bill.error} />
      </div>
      <form class="filters" aria-label="Choose the bill" onSubmit={(e) => e.preventDefault()}>
        <div class="field">
          <label for="b-period">Period</label>
          <input id="b-period" type="month" value={per} onChange={(e) => set("period", (e.target as HTMLInputElement).value)} />
        </div>
        {admin ? (
          <div class="field">
            <label for="b-tenant">Tenant</label>
            <input
              id="b-tenant"
              type="text"
              placeholder="your own"
              value={tenant}
              onChange={(e) => set("tenant", (e.target as HTMLInputElement).value.trim())}
              aria-describedby="b-tenant-help"
            />
            <span id="b-tenant-help" class="muted small">
              Admins may read any tenant's bill.
            </span>
          </div>
        ) : (
          <p class="muted">
            Tenant <strong>{me.tenant}</strong>
          </p>
        )}
      </form>
      <ErrorBox error={bill.error && !b ? bill.error : null} title="Cannot load the bill" />
      {bill.loading && <Loading what="Loading the bill" />}
      {b && (
        <>
          <div class="stats" data-testid="bill-totals">
            <Stat label={`Total ${b.period}`} value={<span data-testid="bill-total">{cny(b.total_cny)}</span>} sub={`tenant ${b.tenant}`} />
            <Stat label="Energy" value={cny(b.energy_cny)} sub={`${fmtNum(b.kwh, 1)} kWh`} />
            <Stat label="Service" value={cny(b.service_cny)} sub={`${fmtNum(b.cu_hours, 2)} CU·h`} />
            <Stat label="Transfer" value={cny(b.transfer_cny)} />
            <Stat label="Carbon" value={`${fmtNum(b.co2_kg, 1)} kg CO₂`} />
            {subsidised && (
              <Stat
                label="You pay"
                value={<span data-testid="bill-paid">{cny(b.paid_cny ?? b.total_cny)}</span>}
                sub={`vouchers paid ${cny(b.subsidy_cny)}`}
              />
            )}
          </div>
          {b.lines.length === 0 ? (
            <Empty title={`No charges in ${b.period}`}>Finished jobs appear here with their metered cost.</Empty>
          ) : (
            <>
              <div class="grid2">
                <Section title="By kind" id="by-kind">
                  <StackedBars
                    title="Bill by kind"
                    rows={KINDS.map((k) => ({
                      label: k,
                      parts: { energy: 0, service: 0, transfer: 0, [k]: dec(b[`${k}_cny` as const]) } as Record<Kind, number>,
                      total: b[`${k}_cny` as const],
                    }))}
                  />
                </Section>
                <Section title="By center" id="by-center">
                  <StackedBars title="Bill by center" rows={centerRows} />
                </Section>
              </div>
              <Section title={`Lines (${b.lines.length})`} id="lines">
                <div class="table-wrap">
                  <table class="data" aria-label="Bill lines">
                    <thead>
                      <tr>
                        <th scope="col">Job</th>
                        <th scope="col">Center</th>
                        <th scope="col">Chips</th>
                        <th scope="col">Ran</th>
                        <th scope="col" class="num">Chip·h</th>
                        <th scope="col" class="num">CU·h</th>
                        <th scope="col" class="num">kWh</th>
                        <th scope="col" class="num">Energy</th>
                        <th scope="col" class="num">Service</th>
                        <th scope="col" class="num">Transfer</th>
                        <th scope="col" class="num">Total</th>
                        {subsidised && <th scope="col">Vouchers</th>}
                        {subsidised && (
                          <th scope="col" class="num">
                            You pay
                          </th>
                        )}
                      </tr>
                    </thead>
                    <tbody>
                      {b.lines.map((l) => (
                        <tr key={l.job_id}>
                          <th scope="row">
                            <a href={href(`jobs/${encodeURIComponent(l.job_id)}`)}>{l.job_name}</a>
                          </th>
                          <td>{l.center}</td>
                          <td class="nowrap">
                            {l.chip} × {l.chips}
                          </td>
                          <td class="nowrap">
                            {shortTime(l.started_at)} → {shortTime(l.finished_at)}
                          </td>
                          <td class="num">{fmtNum(l.chip_hours, 2)}</td>
                          <td class="num">{fmtNum(l.cu_hours, 2)}</td>
                          <td class="num">{fmtNum(l.kwh, 2)}</td>
                          <td class="num">{cny(l.energy_cny)}</td>
                          <td class="num">{cny(l.service_cny)}</td>
                          <td class="num">{cny(l.transfer_cny)}</td>
                          <td class="num strong">{cny(l.total_cny)}</td>
                          {subsidised && (
                            <td class="small nowrap" data-testid="bill-subsidies">
                              {(l.subsidies ?? []).map((x) => (
                                <div key={x.voucher_id}>
                                  #{x.voucher_id} {x.issuer} −{cny(x.amount_cny)}
                                </div>
                              ))}
                            </td>
                          )}
                          {subsidised && <td class="num strong">{cny(l.paid_cny ?? l.total_cny)}</td>}
                        </tr>
                      ))}
                    </tbody>
                  </table>
                </div>
              </Section>
            </>
          )}
          {(b.vouchers ?? []).length > 0 && <Vouchers vouchers={b.vouchers ?? []} />}
          <Tenancy tenant={tenant} />
        </>
      )}
    </div>
  );
}

/** The tenant's compute vouchers: terms, what each has paid and has left. */
function Vouchers({ vouchers }: { vouchers: VoucherView[] }) {
  return (
    <Section title={`Compute vouchers (${vouchers.length})`} id="vouchers">
      <div class="table-wrap">
        <table class="data" aria-label="Compute vouchers" data-testid="vouchers">
          <thead>
            <tr>
              <th scope="col">Voucher</th>
              <th scope="col">Issuer</th>
              <th scope="col" class="num">Share</th>
              <th scope="col" class="num">Cap</th>
              <th scope="col" class="num">Used</th>
              <th scope="col" class="num">Left</th>
              <th scope="col">Valid</th>
              <th scope="col">Where</th>
              <th scope="col">State</th>
            </tr>
          </thead>
          <tbody>
            {vouchers.map((v) => (
              <tr key={v.id}>
                <th scope="row">#{v.id}</th>
                <td>{v.issuer}</td>
                <td class="num">{dec(v.pct)} %</td>
                <td class="num">{cny(v.cap_cny)}</td>
                <td class="num">{cny(v.used_cny)}</td>
                <td class="num strong" data-testid="voucher-left">
                  {cny(v.remaining_cny)}
                </td>
                <td class="nowrap">
                  {shortTime(v.valid_from)} → {shortTime(v.valid_until)}
                </td>
                <td>
                  {v.centers.length ? v.centers.join(", ") : "all centers"}
                  {v.classes.length ? ` · ${v.classes.join(", ")}` : ""}
                </td>
                <td>{v.state ?? ""}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </Section>
  );
}
