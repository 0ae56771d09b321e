declare module "virtual:china-outline" {
  /** Polygons of rings of [lon, lat] in degrees (first ring outer, others holes). */
  const outline: { source: string; polygons: [number, number][][][] };
  export default outline;
}
