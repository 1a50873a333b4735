//! The transport flags of `bt get` and `bt seed`: `--transport LIST` (which transports to dial
//! peers over, in the order tried) and `--no-utp`.

use bt_protocol::client::Transport;

/// Transport flags shared by `bt get` and `bt seed`.
#[derive(Debug, clap::Args)]
pub(crate) struct TransportArgs {
    /// The transports to dial peers over, in the order tried, comma-separated: `utp,tcp` tries
    /// uTP first and TCP when uTP gets no answer within 4 s; `tcp` alone turns uTP off. Peers
    /// are accepted over every transport listed (uTP on the listening port, over UDP).
    #[arg(
        long = "transport",
        value_name = "LIST",
        default_value = "utp,tcp",
        value_parser = parse_transports,
        conflicts_with = "no_utp"
    )]
    transports: TransportList,
    /// TCP only: neither dial nor accept uTP (the same as `--transport tcp`).
    #[arg(long)]
    no_utp: bool,
}

/// A parsed `--transport` list: at least one transport, none twice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TransportList(Vec<Transport>);

impl TransportArgs {
    /// The transports to try, most preferred first.
    pub(crate) fn transports(&self) -> Vec<Transport> {
        if self.no_utp {
            vec![Transport::Tcp]
        } else {
            self.transports.0.clone()
        }
    }
}

/// Parses `utp,tcp` and the like.
fn parse_transports(list: &str) -> Result<TransportList, String> {
    let mut transports = Vec::new();
    for name in list.split(',').map(str::trim) {
        let transport = match name.to_ascii_lowercase().as_str() {
            "utp" => Transport::Utp,
            "tcp" => Transport::Tcp,
            _ => return Err(format!("`{name}` is not a transport (expected utp or tcp)")),
        };
        if transports.contains(&transport) {
            return Err(format!("`{name}` is listed twice"));
        }
        transports.push(transport);
    }
    Ok(TransportList(transports))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_in_order_and_bad_ones_say_why() {
        // Proves the order given is the order kept, and that unknown, empty and repeated names
        // are refused with a reason.
        assert_eq!(
            parse_transports("utp,tcp"),
            Ok(TransportList(vec![Transport::Utp, Transport::Tcp]))
        );
        assert_eq!(
            parse_transports("TCP"),
            Ok(TransportList(vec![Transport::Tcp]))
        );
        assert!(
            parse_transports("quic")
                .unwrap_err()
                .contains("`quic` is not a transport")
        );
        assert!(
            parse_transports("")
                .unwrap_err()
                .contains("is not a transport")
        );
        assert!(
            parse_transports("tcp,tcp")
                .unwrap_err()
                .contains("listed twice")
        );
    }
}
