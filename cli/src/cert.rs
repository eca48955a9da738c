//! `rota cert`: the cluster's CA, node and client certificates, written owner-only.

use crate::args::CertCmd;
use anyhow::Result;
use rota_node::tls::issue::{
    client_files, node_files, write_pair, CA_CERT, CA_KEY, CA_VALID_DAYS, LEAF_VALID_DAYS,
};
use rota_node::tls::Authority;

/// Runs a `rota cert` subcommand.
pub fn run(cmd: CertCmd) -> Result<()> {
    match cmd {
        CertCmd::CreateCa { files, name } => {
            let days = files.days.unwrap_or(CA_VALID_DAYS);
            let (_, issued) = Authority::create(&name, days)?;
            let names = (CA_CERT.to_owned(), CA_KEY.to_owned());
            let (cert, key) = write_pair(&files.certs_dir, names, &issued)?;
            println!("wrote {} and {}", cert.display(), key.display());
            println!(
                "every node and client needs {}; keep {} off the nodes: it signs new certificates",
                cert.display(),
                key.display()
            );
        }
        CertCmd::CreateNode { files, id, hosts } => {
            let authority = Authority::read(&files.certs_dir)?;
            let issued = authority.node(id, &hosts, files.days.unwrap_or(LEAF_VALID_DAYS))?;
            let (cert, key) = write_pair(&files.certs_dir, node_files(id), &issued)?;
            println!(
                "wrote {} and {} for node {id} at {}",
                cert.display(),
                key.display(),
                hosts.join(", ")
            );
        }
        CertCmd::CreateClient {
            files,
            name,
            scopes,
            tenants,
        } => {
            let authority = Authority::read(&files.certs_dir)?;
            let scopes: Vec<_> = rota_state_machine::AuthScope::parse_all(&scopes)?
                .into_iter()
                .collect();
            let issued = authority.client_with(
                &name,
                &scopes,
                &tenants,
                files.days.unwrap_or(LEAF_VALID_DAYS),
            )?;
            let (cert, key) = write_pair(&files.certs_dir, client_files(&name), &issued)?;
            println!(
                "wrote {} and {} for client {name:?}",
                cert.display(),
                key.display()
            );
        }
    }
    Ok(())
}
