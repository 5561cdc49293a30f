// A job's statuses: the dashboard's copy of tally_contracts.statuses (the gateway's unit tests
// check that the two say the same).

/** In the order a job goes through them (the order filters list them). */
export const STATUSES = Object.freeze(["queued", "processing", "completed", "failed", "cancelled"]);

/** A job in one of these never changes again. */
export const FINAL = new Set(["completed", "failed", "cancelled"]);
