//! `init` (plain or encrypted) and `key list|add|remove|passwd`: creating a repository and
//! managing the password-wrapped keys of an encrypted one.

use anyhow::{anyhow, Context, Result};

use cachevault::crypto::{self, PasswordSource, Role};
use cachevault::repo::{KeyInfo, Repository};

use super::args::{InitArgs, KeyAction};
use super::{exit, Ctx, Outcome};

pub fn init(ctx: &Ctx, a: &InitArgs) -> Result<Outcome> {
    let p = ctx.repo_location()?;
    let remote = cachevault::backend::is_url(&p);
    if remote && !a.encrypt && !a.no_encrypt {
        return Err(anyhow!(
            "{p} is off this machine: choose whether its contents are encrypted. \
             --encrypt seals everything (file names, prices, product data) under a key only \
             your password opens: whoever holds the bucket learns object counts, sizes and \
             times, nothing else; a lost password loses the backups. --no-encrypt stores \
             the data readable by anyone who can read the bucket"
        ));
    }
    let repo = if a.encrypt {
        let password = crypto::password_source(Role::Main)
            .ok_or_else(|| {
                anyhow!(
                    "--encrypt needs a password: set CACHEVAULT_PASSWORD, or give --password-file FILE or --password-command CMD"
                )
            })?
            .read()?;
        let backend = cachevault::backend::open(&p)?;
        Repository::init_encrypted_in(
            backend,
            &password,
            a.cipher.unwrap_or(crypto::Cipher::DEFAULT),
        )
    } else {
        Repository::init_at(&p)
    }
    .with_context(|| format!("initialising {p}"))?;
    let c = repo.config();
    let key = repo.crypto().map(|k| k.key_id.clone());
    Ok(Outcome::new(
        serde_json::json!({"repository": p, "id": c.id, "format_version": c.format_version,
                           "encrypted": repo.is_encrypted(), "key": key,
                           "cipher": repo.crypto().map(|k| k.cipher().name())}),
        format!(
            "created {}cachevault repository {} at {p}\n{}",
            if repo.is_encrypted() {
                "encrypted "
            } else {
                ""
            },
            &c.id[..8],
            if repo.is_encrypted() {
                "keep the password safe: without it nothing in the repository can be read\n"
            } else {
                ""
            }
        ),
        exit::OK,
    ))
}

pub fn key(ctx: &Ctx, action: &KeyAction) -> Result<Outcome> {
    let repo = ctx.open_repo()?;
    if !repo.is_encrypted() {
        return Err(anyhow!(
            "{} is not encrypted: it has no keys (create an encrypted repository with `init --encrypt`)",
            repo.location()
        ));
    }
    let new_password = |f: &std::path::PathBuf| PasswordSource::File(f.clone()).read();
    match action {
        KeyAction::List => {
            let keys = repo.keys()?;
            let mut human = format!("{:<10} {:<26} {:<20} user\n", "id", "created", "host");
            for k in &keys {
                human.push_str(&line(k));
            }
            Ok(Outcome::new(serde_json::to_value(&keys)?, human, exit::OK))
        }
        KeyAction::Add { new_password_file } => {
            let id = repo.add_key(&new_password(new_password_file)?)?;
            Ok(Outcome::new(
                serde_json::json!({"added": id}),
                format!("added key {}\n", crypto::short(&id)),
                exit::OK,
            ))
        }
        KeyAction::Remove { id } => {
            let removed = repo.remove_key(id)?;
            Ok(Outcome::new(
                serde_json::json!({"removed": removed}),
                format!("removed key {}\n", crypto::short(&removed)),
                exit::OK,
            ))
        }
        KeyAction::Passwd { new_password_file } => {
            let old = repo
                .crypto()
                .map(|c| c.key_id.clone())
                .expect("an encrypted repository was opened with a key");
            let added = repo.add_key(&new_password(new_password_file)?)?;
            // The old key goes only once the new one is durable; the new key is not the one
            // in use, so remove it through a view that opened with it.
            repo.backend()
                .remove(
                    cachevault::backend::ObjectKind::Key,
                    &cachevault::repo::layout::key(&old),
                )
                .with_context(|| {
                    format!(
                        "the new key {} was added, but the old key {} could not be removed",
                        crypto::short(&added),
                        crypto::short(&old)
                    )
                })?;
            repo.backend().sync(cachevault::backend::ObjectKind::Key)?;
            Ok(Outcome::new(
                serde_json::json!({"added": added, "removed": old}),
                format!(
                    "password changed: key {} replaces key {}\n",
                    crypto::short(&added),
                    crypto::short(&old)
                ),
                exit::OK,
            ))
        }
    }
}

fn line(k: &KeyInfo) -> String {
    format!(
        "{}{:<9} {:<26} {:<20} {}\n",
        if k.current { "*" } else { " " },
        crypto::short(&k.id),
        k.created.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        k.host,
        k.username
    )
}
