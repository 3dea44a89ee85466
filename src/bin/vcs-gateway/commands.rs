//! The store commands: pools (`pool create`, `list`, `update`, `rotate`, `delete`) and
//! callers (`caller create`, `list`, `rotate`, `delete`), each printing what it made or found.

use crate::flags::{
    invalid, required, CallerCreate, CliError, Named, PoolCreate, PoolRotate, PoolUpdate,
};
use std::path::Path;
use vcs_agent::clock::format_time;
use vcs_agent::gateway::config::{self, StoreFlags};
use vcs_agent::gateway::store::{validate_caller_name, Scope};
use vcs_agent::observe::escape;
use vcs_agent::token::{Secret, Token};

pub fn pool_create(flags: PoolCreate) -> Result<(), CliError> {
    let PoolCreate {
        pool,
        description,
        webhook_url,
    } = flags;
    let name = pool.named.name()?;
    let public_url = token_host(pool.public_url)?;
    let store = pool.named.store.open()?;
    let (record, key) = store.create(&name, &description)?;
    if let Some(url) = webhook_url {
        if let Some((_, Some(secret))) = store.set_webhook(&name, Some(&url))? {
            eprintln!(
                "webhook secret of pool {name} (shown once): {}",
                secret.expose()
            );
        }
    }
    print_token(public_url, key, record.ulid);
    Ok(())
}

pub fn pool_update(flags: PoolUpdate) -> Result<(), CliError> {
    let name = flags.named.name()?;
    let url = flags
        .webhook_url
        .ok_or(required("--webhook-url or --no-webhook-url"))?;
    let (_, secret) = flags
        .named
        .store
        .open()?
        .set_webhook(&name, url.as_deref())?
        .ok_or(CliError::NoSuch { kind: "pool", name })?;
    match (url, secret) {
        (Some(_), Some(secret)) => println!("{}", secret.expose()),
        (Some(_), None) => eprintln!("webhook URL set; the pool keeps its webhook secret"),
        (None, _) => eprintln!("webhook URL cleared"),
    }
    Ok(())
}

pub fn pool_rotate(flags: PoolRotate) -> Result<(), CliError> {
    let name = flags.named.name()?;
    let public_url = token_host(flags.public_url)?;
    let (record, key) = flags
        .named
        .store
        .open()?
        .rotate(&name)?
        .ok_or(CliError::NoSuch { kind: "pool", name })?;
    print_token(public_url, key, record.ulid);
    Ok(())
}

pub fn pool_delete(flags: Named) -> Result<(), CliError> {
    let name = flags.name()?;
    if !flags.store.open()?.delete(&name)? {
        return Err(CliError::NoSuch { kind: "pool", name });
    }
    println!("pool {name} deleted");
    Ok(())
}

pub fn pool_list(store: StoreFlags) -> Result<(), CliError> {
    let store = store.open()?;
    println!("{:<24} {:<26} {:<20} DESCRIPTION", "NAME", "ID", "CREATED");
    for pool in store.load()? {
        println!(
            "{:<24} {:<26} {:<20} {}",
            pool.name,
            pool.ulid,
            format_time(pool.created),
            escape::text(&pool.description)
        );
    }
    Ok(())
}

/// The agent URL a CLI-made token carries: `--public-url`, checked, or the default agent port.
fn token_host(public_url: Option<String>) -> Result<String, CliError> {
    let public_url = public_url.unwrap_or_else(|| "ws://127.0.0.1:1984".into());
    config::check_public_url(&public_url)?;
    Ok(public_url)
}

/// Prints a pool token, alone on its line (its only copy: the store keeps a hash).
fn print_token(host: String, key: Secret, pool_ulid: String) {
    let token = Token {
        host,
        key,
        pool_ulid,
    };
    println!("{}", token.encode());
}

pub fn caller_create(flags: CallerCreate) -> Result<(), CliError> {
    let CallerCreate {
        named,
        scope,
        client_cert,
    } = flags;
    let store = named.store.open()?;
    let scope = scope.ok_or(required("--pools POOL,POOL... or --all-pools"))?;
    let name = named.name.ok_or(required("--name"))?;
    validate_caller_name(&name).map_err(|e| invalid("--name", e))?;
    if let Scope::Pools(pools) = &scope {
        let known = store.load()?;
        if let Some(missing) = pools.iter().find(|p| !known.iter().any(|k| &k.name == *p)) {
            let problem = format!("no pool named \"{missing}\" (see pool list)");
            return Err(invalid("--pools", problem));
        }
    }
    let fingerprint = match &client_cert {
        None => None,
        Some(path) => Some(certificate_sha256(path)?),
    };
    let (record, secret) = store.create_caller(&name, &scope, fingerprint)?;
    println!(
        "caller {name} created ({}), may use {}; its secret, shown only now:",
        record.id,
        describe_scope(&record.scope())
    );
    println!("{}", secret.expose());
    Ok(())
}

pub fn caller_rotate(flags: Named) -> Result<(), CliError> {
    let store = flags.store.open()?;
    let name = flags.name.ok_or(required("--name"))?;
    let (_, secret) = store
        .rotate_caller(&name)?
        .ok_or_else(|| CliError::NoSuch {
            kind: "caller",
            name: name.clone(),
        })?;
    println!("caller {name} has a new secret (the old one no longer works), shown only now:");
    println!("{}", secret.expose());
    Ok(())
}

pub fn caller_delete(flags: Named) -> Result<(), CliError> {
    let store = flags.store.open()?;
    let name = flags.name.ok_or(required("--name"))?;
    if !store.delete_caller(&name)? {
        return Err(CliError::NoSuch {
            kind: "caller",
            name,
        });
    }
    println!("caller {name} deleted");
    Ok(())
}

pub fn caller_list(store: StoreFlags) -> Result<(), CliError> {
    let store = store.open()?;
    println!("{:<24} {:<26} {:<20} POOLS", "NAME", "ID", "CREATED");
    for c in store.load_callers()? {
        let pools = describe_scope(&c.scope());
        println!(
            "{:<24} {:<26} {:<20} {pools}",
            c.name,
            c.id,
            format_time(c.created)
        );
    }
    Ok(())
}

/// `--client-cert PEM`: the SHA-256 (hex) of the file's first certificate.
fn certificate_sha256(path: &Path) -> Result<String, CliError> {
    use sha2::Digest;
    let certs =
        vcs_agent::net::tls::pem_certificates(path).map_err(|e| invalid("--client-cert", e))?;
    let digest = sha2::Sha256::digest(certs[0].as_ref());
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
}

fn describe_scope(scope: &Scope) -> String {
    match scope {
        Scope::All => "all pools".into(),
        Scope::Pools(pools) => pools.join(","),
    }
}
