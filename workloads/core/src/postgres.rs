//! What auth and query share about Postgres. Pure.

/// `host:port/db` of a DSN, without credentials, for messages.
pub fn dsn_server(dsn: &str) -> String {
    let Some((_, rest)) = dsn.split_once("://") else {
        // key=value DSNs may carry password=...: never echo them.
        return "<POSTGRES_DSN without a URL scheme>".to_owned();
    };
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split('?').next().unwrap_or(rest).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsn_server_drops_credentials() {
        assert_eq!(
            dsn_server("postgres://u:secret@db.internal:5432/app?sslmode=require"),
            "db.internal:5432/app"
        );
        assert_eq!(dsn_server("postgres://localhost/app"), "localhost/app");
        assert!(!dsn_server("host=db password=hunter2").contains("hunter2"));
    }
}
