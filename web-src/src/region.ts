// What makes a center a region (docs/federation.md): a whole network that joins this
// plane as one center. Kept free of UI imports so that the map and the pages share it.

import type { CenterView } from "./types";

/** The network-file tag of a center that is a region. */
export const REGION_TAG = "region";

/** Whether a center is a region: a network backend, a `region` tag, or a region's pool fields. */
export function isRegion(c: Pick<CenterView, "backend" | "pools"> & { tags?: string[] }): boolean {
  return c.backend === "network" || (c.tags ?? []).includes(REGION_TAG) || c.pools.some((p) => p.largest_free !== undefined);
}
