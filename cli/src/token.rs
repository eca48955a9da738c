//! `rota token`: bearer tokens, created (the secret printed once), listed and revoked.

use crate::args::{Global, TokenCmd};
use crate::output::Output;
use anyhow::Result;
use rota_client::proto as pb;
use rota_client::Client;

/// `rota token create|list|revoke`.
pub async fn run(cmd: TokenCmd, global: &Global, client: &Client, out: &Output) -> Result<()> {
    match cmd {
        TokenCmd::Create {
            name,
            scopes,
            tenants,
            ttl,
            reason,
            ticket,
        } => {
            let token = client
                .create_token(pb::CreateTokenRequest {
                    name,
                    scopes,
                    tenants,
                    ttl_ms: ttl.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                    stamp: Some(global.stamp(reason, ticket)),
                })
                .await?;
            out.new_token(&token);
        }
        TokenCmd::List => {
            let tokens = client.list_tokens(pb::ListTokensRequest {}).await?;
            out.tokens(&tokens);
        }
        TokenCmd::Revoke {
            name,
            reason,
            ticket,
        } => {
            client
                .revoke_token(pb::RevokeTokenRequest {
                    name: name.clone(),
                    stamp: Some(global.stamp(reason, ticket)),
                })
                .await?;
            out.done(&format!("token {name:?} revoked"));
        }
    }
    Ok(())
}
