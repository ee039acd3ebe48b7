//! Part of the `exporter` check: the DNS questions the accounting workload asks its own resolver
//! on 127.0.0.1:53 while kc-exporter runs, found in the next scrape as that server's series,
//! exactly: three queries, one NOERROR answer, one latency sample, and two timeouts (a question
//! left unanswered at the workload's exit, and one at its child's, whose socket entry a later
//! child given the same pid must not be taken for: no fourth query, no third timeout); the
//! scrape well formed for promtool with them.

use std::path::Path;

use anyhow::{ensure, Context, Result};

/// The server the accounting workload asks (co-re/tests/kc-accounting-workload.c, `dns`).
const SERVER: &str = "127.0.0.1";

/// The value of the sample `name{labels}` in an exposition (labels as written, in order).
fn sample(scrape: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Runs the accounting workload (in a directory under `dir`), then scrapes `url` and holds the
/// workload's server to what it asked.
pub fn judge(client: &reqwest::blocking::Client, url: &str, dir: &Path) -> Result<()> {
    let tc = crate::compile::toolchain::Toolchain::detect()?;
    let workload = crate::vmtest::static_binaries(&tc, kc_common::host::host_arch()?)?.accounting;
    let work = dir.join("dns-workload");
    std::fs::create_dir_all(&work)?;
    let status = std::process::Command::new(&workload)
        .arg(&work)
        .status()
        .with_context(|| format!("starting {}", workload.display()))?;
    ensure!(status.success(), "{} failed ({status})", workload.display());
    let scrape = client.get(url).send()?.error_for_status()?.text()?;
    // The server's series are well formed, as Prometheus's own checker reads them.
    super::exporter::promtool_accepts(&scrape, dir)?;
    let server = format!("server=\"{SERVER}\"");
    let expected = [
        ("kc_dns_server_queries_total", server.clone(), 3.0),
        (
            "kc_dns_server_responses_total",
            format!("{server},rcode=\"noerror\""),
            1.0,
        ),
        ("kc_dns_server_latency_seconds_count", server.clone(), 1.0),
        ("kc_dns_server_timeouts_total", server.clone(), 2.0),
    ];
    let wrong: Vec<String> = expected
        .iter()
        .filter_map(|(name, labels, asked)| {
            let got = sample(&scrape, name, labels);
            (got != Some(*asked))
                .then(|| format!("{name}{{{labels}}}: {got:?}, the workload's {asked}"))
        })
        .collect();
    ensure!(
        wrong.is_empty(),
        "the workload's DNS question in the scrape:\n{}\n(the scrape's dns series:\n{})",
        wrong.join("\n"),
        scrape
            .lines()
            .filter(|l| l.starts_with("kc_dns_server"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!(
        "e2e: kc-exporter: the workload's DNS questions to {SERVER}: 3 queries, 1 NOERROR answer, \
         1 latency sample, 2 timeouts (at its exit and its child's; none from a later child given that pid)"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::sample;

    #[test]
    fn a_sample_is_found_by_its_name_and_labels() {
        let scrape = "# TYPE kc_dns_server_queries counter\n\
                      kc_dns_server_queries_total{server=\"127.0.0.1\"} 1\n\
                      kc_dns_server_queries_total{server=\"::1\"} 4\n";
        assert_eq!(
            sample(scrape, "kc_dns_server_queries_total", "server=\"::1\""),
            Some(4.0)
        );
        assert_eq!(
            sample(scrape, "kc_dns_server_queries_total", "server=\"10.0.0.1\""),
            None
        );
        assert_eq!(
            sample(scrape, "kc_dns_server_queries", "server=\"::1\""),
            None
        );
    }
}
