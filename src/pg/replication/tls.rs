//! TLS to the source the way libpq does it: `sslmode` disable / prefer (the default) /
//! require / verify-ca / verify-full, with `sslrootcert` naming the CA for the verifying modes.
//! Negotiated with PostgreSQL's SSLRequest, then rustls.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    Disable,
    /// TLS when the server offers it, no verification (libpq's default).
    #[default]
    Prefer,
    /// TLS or fail; the certificate is not verified.
    Require,
    /// TLS with a certificate signed by `sslrootcert`; any host name.
    VerifyCa,
    /// TLS with a certificate signed by `sslrootcert` for the host connected to.
    VerifyFull,
}

impl SslMode {
    pub fn parse(s: &str) -> Result<SslMode, String> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return Err(format!("invalid sslmode '{s}'")),
        })
    }

    pub fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

/// The TLS settings of a connection string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsParams {
    pub mode: SslMode,
    pub root_cert: Option<PathBuf>,
}

/// Takes `sslmode` and `sslrootcert` out of a `key=value` connection string (the parser
/// underneath knows neither verify mode nor root certificates); returns the rest.
pub fn split(conninfo: &str) -> Result<(String, TlsParams), String> {
    let mut tls = TlsParams::default();
    let mut rest = Vec::new();
    if conninfo.starts_with("postgres://") || conninfo.starts_with("postgresql://") {
        let (base, query) = conninfo.split_once('?').unwrap_or((conninfo, ""));
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("sslmode", v)) => tls.mode = SslMode::parse(v)?,
                Some(("sslrootcert", v)) => tls.root_cert = Some(PathBuf::from(v)),
                _ => kept.push(pair),
            }
        }
        let url = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return Ok((url, tls));
    }
    for token in conninfo.split_whitespace() {
        match token.split_once('=') {
            Some(("sslmode", v)) => tls.mode = SslMode::parse(v.trim_matches('\''))?,
            Some(("sslrootcert", v)) => tls.root_cert = Some(PathBuf::from(v.trim_matches('\''))),
            _ => rest.push(token),
        }
    }
    if tls.mode.verifies() && tls.root_cert.is_none() {
        return Err(format!(
            "sslmode={} needs sslrootcert (the CA that signed the server's certificate)",
            if tls.mode == SslMode::VerifyCa {
                "verify-ca"
            } else {
                "verify-full"
            }
        ));
    }
    Ok((rest.join(" "), tls))
}

/// The rustls client configuration for a mode.
pub fn client_config(tls: &TlsParams) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let verifier: Arc<dyn ServerCertVerifier> = match (&tls.root_cert, tls.mode.verifies()) {
        (Some(path), true) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read sslrootcert {}: {e}", path.display()))?
            {
                let cert = cert.map_err(|e| format!("bad sslrootcert {}: {e}", path.display()))?;
                roots.add(cert).map_err(|e| e.to_string())?;
            }
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| e.to_string())?;
            Arc::new(Verify {
                inner: webpki,
                check_name: tls.mode == SslMode::VerifyFull,
            })
        }
        _ => Arc::new(NoVerify(provider)),
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// verify-ca and verify-full: the chain must lead to the root; the name only for verify-full.
#[derive(Debug)]
struct Verify {
    inner: Arc<WebPkiServerVerifier>,
    check_name: bool,
}

impl ServerCertVerifier for Verify {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// prefer and require: encrypted, not authenticated (as libpq without a root certificate).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_settings_are_taken_out_of_the_connection_string() {
        let (rest, tls) =
            split("host=db port=5432 sslmode=verify-full sslrootcert=/ca.pem").unwrap();
        assert_eq!(rest, "host=db port=5432");
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(tls.root_cert, Some(PathBuf::from("/ca.pem")));
        let (rest, tls) = split("host=db user=r").unwrap();
        assert_eq!(
            (rest.as_str(), tls.mode),
            ("host=db user=r", SslMode::Prefer)
        );
        let (url, tls) =
            split("postgresql://r@db:5432/x?sslmode=require&application_name=a").unwrap();
        assert_eq!(url, "postgresql://r@db:5432/x?application_name=a");
        assert_eq!(tls.mode, SslMode::Require);
        assert!(
            split("host=db sslmode=verify-ca")
                .unwrap_err()
                .contains("sslrootcert")
        );
        assert!(split("host=db sslmode=sometimes").is_err());
    }
}
