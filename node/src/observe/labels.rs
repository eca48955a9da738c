//! Bounded label sets: a metric labelled by tenant and job type gets a series for the first
//! `MAX_PAIRS` pairs it meets; the rest share one series named `OTHER`, so a cluster with
//! thousands of tenants still serves a scrape of bounded size.

/// Most (tenant, job type) pairs with series of their own, per metric source.
pub const MAX_PAIRS: usize = 200;

/// The label value of the series the pairs past the cap share.
pub const OTHER: &str = "_other";

/// `[("tenant", t), ("jobType", j)]` and any more labels, as prometheus-client encodes them.
pub type PairLabels<'a> = Vec<(&'static str, &'a str)>;

/// The labels of one (tenant, job type) pair, with `extra` after them.
pub fn pair<'a>(
    tenant: &'a str,
    job_type: &'a str,
    extra: &[(&'static str, &'a str)],
) -> PairLabels<'a> {
    let mut labels = Vec::with_capacity(2 + extra.len());
    labels.push(("tenant", tenant));
    labels.push(("jobType", job_type));
    labels.extend_from_slice(extra);
    labels
}
