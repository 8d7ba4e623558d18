//! Name resolution as a pod sees it: `dns-lookup` (alias `nslookup`)
//! resolves through hickory with the pod's /etc/resolv.conf (search list,
//! ndots) and /etc/hosts, since a static binary has no glibc NSS;
//! `dns-suffix`, `dns-server-list` and `etc-hosts` print the pod's DNS
//! configuration as upstream's agnhost does.

use anyhow::Context;

use crate::net;

const RESOLV_CONF: &str = "/etc/resolv.conf";

#[derive(clap::Args, Debug)]
pub struct LookupArgs {
    /// The name to resolve (relative names go through the search list).
    name: String,
}

pub async fn lookup(args: LookupArgs) -> anyhow::Result<()> {
    let resolver = net::resolver()?;
    let found = resolver
        .lookup_ip(args.name.as_str())
        .await
        .with_context(|| format!("resolving {}", args.name))?;
    let mut any = false;
    for ip in found.iter() {
        println!("{ip}");
        any = true;
    }
    anyhow::ensure!(any, "{}: no addresses", args.name);
    Ok(())
}

/// The search list, comma-separated.
pub fn suffix() -> anyhow::Result<()> {
    let conf = std::fs::read_to_string(RESOLV_CONF).context(RESOLV_CONF)?;
    println!("{}", ResolvConf::parse(&conf).search.join(","));
    Ok(())
}

/// The name servers, comma-separated.
pub fn server_list() -> anyhow::Result<()> {
    let conf = std::fs::read_to_string(RESOLV_CONF).context(RESOLV_CONF)?;
    println!("{}", ResolvConf::parse(&conf).nameservers.join(","));
    Ok(())
}

pub fn etc_hosts() -> anyhow::Result<()> {
    print!("{}", std::fs::read_to_string("/etc/hosts").context("/etc/hosts")?);
    Ok(())
}

/// The parts of resolv.conf(5) the subcommands print.
#[derive(Debug, Default, PartialEq)]
pub struct ResolvConf {
    pub nameservers: Vec<String>,
    pub search: Vec<String>,
}

impl ResolvConf {
    pub fn parse(text: &str) -> ResolvConf {
        let mut conf = ResolvConf::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => conf.nameservers.extend(words.next().map(str::to_owned)),
                // The last search (or domain) line wins, as in libc.
                Some("search") | Some("domain") => conf.search = words.map(str::to_owned).collect(),
                _ => {}
            }
        }
        conf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_resolv_conf() {
        let conf = ResolvConf::parse(
            "# generated\nsearch ns.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\n\
             nameserver 1.1.1.1 # backup\noptions ndots:5\n",
        );
        assert_eq!(conf.nameservers, ["10.96.0.10", "1.1.1.1"]);
        assert_eq!(
            conf.search,
            ["ns.svc.cluster.local", "svc.cluster.local", "cluster.local"]
        );
        assert_eq!(ResolvConf::parse(""), ResolvConf::default());
    }
}
