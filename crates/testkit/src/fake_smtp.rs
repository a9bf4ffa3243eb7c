//! A local SMTP sink: a TCP server on 127.0.0.1 that speaks enough of RFC 5321 for a mail client to hand
//! it messages, and keeps them.
//!
//! What it checks, as a strict relay would:
//! - the greeting first (`220`), then `EHLO`/`HELO` with a domain before any transaction (`503` otherwise,
//!   `501` without a domain);
//! - with credentials configured, `AUTH PLAIN` (initial response or after `334`) or `AUTH LOGIN` must
//!   succeed before `MAIL FROM` (`530` otherwise; `535` for wrong credentials); `AUTH` is advertised only
//!   then, and refused (`503`) when already authenticated;
//! - `MAIL FROM:<addr>` then one or more `RCPT TO:<addr>` then `DATA`: out of order is `503`, a malformed
//!   path `501`; more than [`MAX_RECIPIENTS`] recipients is `452`;
//! - the message ends at a line holding only `.`, dot-stuffing is undone, and a message over the advertised
//!   `SIZE` is refused with `552`; command lines over 512 octets are refused with `500`;
//! - `RSET`, `NOOP` and `QUIT` as specified; `STARTTLS` is not offered (`502`): clients connect in the clear.
//!
//! One-off failures can be queued ([`FakeSmtpHandle::fail_next_data`]): the next `DATA` is answered with the
//! given code (a `4xx` transient or a `5xx` permanent failure) and nothing is stored.

use crate::TestkitError;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The most recipients one message may have.
pub const MAX_RECIPIENTS: usize = 100;
/// The longest command line (RFC 5321 §4.5.3.1.4), CRLF included.
const MAX_COMMAND_LINE: usize = 512;
/// How long a client may stay silent before the sink hangs up.
const IDLE: Duration = Duration::from_secs(30);

/// How the sink is set up.
#[derive(Debug, Clone)]
pub struct FakeSmtpConfig {
    /// Username and password a client must authenticate with; `None`: no authentication.
    pub credentials: Option<(String, String)>,
    /// The largest message accepted (advertised as `SIZE`).
    pub max_message_bytes: usize,
}

impl Default for FakeSmtpConfig {
    fn default() -> Self {
        FakeSmtpConfig { credentials: None, max_message_bytes: 10 * 1024 * 1024 }
    }
}

/// A message as handed over: the envelope and the raw data (CRLF line ends, dot-stuffing undone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    pub helo: String,
    /// The authenticated user, if any.
    pub user: Option<String>,
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

/// One command as received, with the reply code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpCommand {
    pub line: String,
    pub code: u16,
}

#[derive(Default)]
struct State {
    mails: Vec<ReceivedMail>,
    commands: Vec<SmtpCommand>,
    failures: VecDeque<(u16, String)>,
}

struct Shared {
    config: FakeSmtpConfig,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct FakeSmtp;

impl FakeSmtp {
    /// Starts the sink on an ephemeral port of 127.0.0.1.
    pub async fn start(config: FakeSmtpConfig) -> Result<FakeSmtpHandle, TestkitError> {
        let shared = Arc::new(Shared { config, state: Mutex::new(State::default()) });
        let state = shared.clone();
        let server = crate::server::Running::start(|listener, stop| serve(listener, state, stop)).await?;
        Ok(FakeSmtpHandle { server, shared })
    }
}

async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: crate::server::StopSignal,
) -> Result<(), TestkitError> {
    let mut stop = stop;
    let mut sessions = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => {
                let (stream, _) = accepted.map_err(TestkitError::Serve)?;
                let shared = shared.clone();
                sessions.spawn(async move {
                    // A session ends on QUIT, on a hang-up, on an I/O error or after being idle too long.
                    let _ = session(stream, &shared).await;
                });
            }
        }
    }
    sessions.abort_all();
    Ok(())
}

/// Where a session stands.
#[derive(Default)]
struct Session {
    helo: Option<String>,
    user: Option<String>,
    from: Option<String>,
    to: Vec<String>,
}

async fn session(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    write.write_all(b"220 fake-smtp ESMTP ready\r\n").await?;
    let mut s = Session::default();
    loop {
        let Some(line) = read_line(&mut read).await? else { return Ok(()) };
        if line.len() > MAX_COMMAND_LINE {
            reply(shared, &mut write, "<over-long line>", 500, "5.5.2 Line too long").await?;
            continue;
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        let (verb, arg) = match line.split_once(' ') {
            Some((v, a)) => (v.to_ascii_uppercase(), a.trim().to_string()),
            None => (line.to_ascii_uppercase(), String::new()),
        };
        // What is logged never holds a credential.
        let logged = if verb == "AUTH" {
            format!("AUTH {}", arg.split(' ').next().unwrap_or(""))
        } else {
            line.clone()
        };
        match verb.as_str() {
            "EHLO" | "HELO" => {
                if arg.is_empty() {
                    reply(shared, &mut write, &logged, 501, "5.5.4 A domain or address literal is required")
                        .await?;
                    continue;
                }
                s = Session { helo: Some(arg), ..Session::default() };
                let code = 250;
                shared.lock().commands.push(SmtpCommand { line: logged, code });
                if verb == "HELO" {
                    write.write_all(b"250 fake-smtp\r\n").await?;
                } else {
                    let mut lines = vec!["fake-smtp greets you".to_string(), "8BITMIME".into()];
                    if shared.config.credentials.is_some() {
                        lines.push("AUTH PLAIN LOGIN".into());
                    }
                    lines.push(format!("SIZE {}", shared.config.max_message_bytes));
                    let mut out = String::new();
                    for (i, l) in lines.iter().enumerate() {
                        let sep = if i + 1 == lines.len() { ' ' } else { '-' };
                        out.push_str(&format!("250{sep}{l}\r\n"));
                    }
                    write.write_all(out.as_bytes()).await?;
                }
            }
            "AUTH" => {
                let (code, text) = auth(shared, &mut s, &arg, &mut read, &mut write).await?;
                reply(shared, &mut write, &logged, code, &text).await?;
            }
            "MAIL" => {
                let (code, text) = if s.helo.is_none() {
                    (503, "5.5.1 Send EHLO first".to_string())
                } else if shared.config.credentials.is_some() && s.user.is_none() {
                    (530, "5.7.0 Authentication required".to_string())
                } else if s.from.is_some() {
                    (503, "5.5.1 A transaction is already in progress".to_string())
                } else {
                    match path(&arg, "FROM:", true) {
                        Some(from) => {
                            s.from = Some(from);
                            (250, "2.1.0 Sender OK".to_string())
                        }
                        None => (501, "5.1.7 Syntax: MAIL FROM:<address>".to_string()),
                    }
                };
                reply(shared, &mut write, &logged, code, &text).await?;
            }
            "RCPT" => {
                let (code, text) = if s.from.is_none() {
                    (503, "5.5.1 Need MAIL before RCPT".to_string())
                } else if s.to.len() >= MAX_RECIPIENTS {
                    (452, "4.5.3 Too many recipients".to_string())
                } else {
                    match path(&arg, "TO:", false) {
                        Some(to) => {
                            s.to.push(to);
                            (250, "2.1.5 Recipient OK".to_string())
                        }
                        None => (501, "5.1.3 Syntax: RCPT TO:<address>".to_string()),
                    }
                };
                reply(shared, &mut write, &logged, code, &text).await?;
            }
            "DATA" => {
                if !arg.is_empty() {
                    reply(shared, &mut write, &logged, 501, "5.5.4 DATA takes no argument").await?;
                    continue;
                }
                if s.from.is_none() || s.to.is_empty() {
                    reply(shared, &mut write, &logged, 503, "5.5.1 Need MAIL and RCPT before DATA").await?;
                    continue;
                }
                reply(shared, &mut write, &logged, 354, "End data with <CR><LF>.<CR><LF>").await?;
                let max = shared.config.max_message_bytes;
                let Some((data, too_big)) = read_data(&mut read, max).await? else { return Ok(()) };
                let failure = shared.lock().failures.pop_front();
                let (code, text) = if too_big {
                    (552, format!("5.3.4 Message over the size limit of {max} bytes"))
                } else if let Some((code, text)) = failure {
                    (code, text)
                } else {
                    let mail = ReceivedMail {
                        helo: s.helo.clone().unwrap_or_default(),
                        user: s.user.clone(),
                        from: s.from.clone().unwrap_or_default(),
                        to: s.to.clone(),
                        data,
                    };
                    shared.lock().mails.push(mail);
                    (250, "2.0.0 Queued".to_string())
                };
                s.from = None;
                s.to.clear();
                reply(shared, &mut write, "<message data>", code, &text).await?;
            }
            "RSET" => {
                s.from = None;
                s.to.clear();
                reply(shared, &mut write, &logged, 250, "2.0.0 Reset").await?;
            }
            "NOOP" => reply(shared, &mut write, &logged, 250, "2.0.0 OK").await?,
            "QUIT" => {
                reply(shared, &mut write, &logged, 221, "2.0.0 Bye").await?;
                return Ok(());
            }
            "STARTTLS" => reply(shared, &mut write, &logged, 502, "5.5.1 STARTTLS is not offered").await?,
            _ => reply(shared, &mut write, &logged, 500, "5.5.2 Command not recognised").await?,
        }
    }
}

/// One line, through its LF; `None` at the end of the stream or when the client stays idle.
async fn read_line(read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = match tokio::time::timeout(IDLE, read.read_until(b'\n', &mut buf)).await {
        Ok(r) => r?,
        Err(_) => return Ok(None),
    };
    if n == 0 {
        return Ok(None);
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

/// The message after `354`, up to the line holding only `.`; whether it was over `max` bytes.
async fn read_data(
    read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    max: usize,
) -> std::io::Result<Option<(String, bool)>> {
    let mut data = String::new();
    let mut too_big = false;
    loop {
        let Some(line) = read_line(read).await? else { return Ok(None) };
        if line == ".\r\n" || line == ".\n" {
            return Ok(Some((data, too_big)));
        }
        let line = line.strip_prefix('.').unwrap_or(&line);
        if data.len() + line.len() > max {
            too_big = true;
        } else {
            data.push_str(line);
        }
    }
}

/// The address in `FROM:<a@b>` / `TO:<a@b>` (parameters after it ignored); `<>` is the null sender,
/// allowed for `MAIL` only.
fn path(arg: &str, prefix: &str, null_ok: bool) -> Option<String> {
    let rest =
        arg.get(..prefix.len()).filter(|p| p.eq_ignore_ascii_case(prefix)).map(|_| &arg[prefix.len()..])?;
    let rest = rest.trim_start();
    let inner = rest.strip_prefix('<')?;
    let end = inner.find('>')?;
    let addr = &inner[..end];
    if addr.is_empty() {
        return null_ok.then(String::new);
    }
    let (local, domain) = addr.rsplit_once('@')?;
    let ok = !local.is_empty()
        && !domain.is_empty()
        && domain.contains('.')
        && !addr.chars().any(|c| c.is_whitespace() || c.is_control());
    ok.then(|| addr.to_string())
}

async fn auth(
    shared: &Shared,
    s: &mut Session,
    arg: &str,
    read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    write: &mut tokio::net::tcp::OwnedWriteHalf,
) -> std::io::Result<(u16, String)> {
    let Some((user, pass)) = shared.config.credentials.clone() else {
        return Ok((502, "5.5.1 AUTH is not offered".into()));
    };
    if s.helo.is_none() {
        return Ok((503, "5.5.1 Send EHLO first".into()));
    }
    if s.user.is_some() {
        return Ok((503, "5.5.1 Already authenticated".into()));
    }
    if s.from.is_some() {
        return Ok((503, "5.5.1 AUTH is not allowed during a mail transaction".into()));
    }
    let mut parts = arg.split_whitespace();
    let mechanism = parts.next().unwrap_or("").to_ascii_uppercase();
    let initial = parts.next().map(str::to_string);
    let decode = |b: &str| B64.decode(b.trim()).ok().and_then(|v| String::from_utf8(v).ok());
    let mut challenge = async |prompt: &str| -> std::io::Result<Option<String>> {
        write.write_all(format!("334 {prompt}\r\n").as_bytes()).await?;
        Ok(read_line(read).await?.map(|l| l.trim_end_matches(['\r', '\n']).to_string()))
    };
    let given = match mechanism.as_str() {
        "PLAIN" => {
            let response = match initial {
                Some(r) => r,
                None => match challenge("").await? {
                    Some(r) => r,
                    None => return Ok((421, "4.4.2 Connection dropped".into())),
                },
            };
            if response == "*" {
                return Ok((501, "5.0.0 Authentication cancelled".into()));
            }
            let Some(text) = decode(&response) else {
                return Ok((501, "5.5.2 Cannot decode the response".into()));
            };
            // authzid \0 authcid \0 password
            let fields: Vec<&str> = text.split('\0').collect();
            if fields.len() != 3 {
                return Ok((501, "5.5.2 PLAIN takes authzid NUL user NUL password".into()));
            }
            (fields[1].to_string(), fields[2].to_string())
        }
        "LOGIN" => {
            if initial.is_some() {
                return Ok((501, "5.5.2 LOGIN takes no initial response".into()));
            }
            let Some(u) = challenge(&B64.encode("Username:")).await? else {
                return Ok((421, "4.4.2 Connection dropped".into()));
            };
            let Some(p) = challenge(&B64.encode("Password:")).await? else {
                return Ok((421, "4.4.2 Connection dropped".into()));
            };
            match (decode(&u), decode(&p)) {
                (Some(u), Some(p)) => (u, p),
                _ => return Ok((501, "5.5.2 Cannot decode the response".into())),
            }
        }
        "" => return Ok((501, "5.5.4 AUTH needs a mechanism".into())),
        _ => return Ok((504, format!("5.5.4 Mechanism {mechanism} is not supported"))),
    };
    if given == (user.clone(), pass) {
        s.user = Some(user);
        Ok((235, "2.7.0 Authentication successful".into()))
    } else {
        Ok((535, "5.7.8 Authentication credentials invalid".into()))
    }
}

async fn reply(
    shared: &Shared,
    write: &mut tokio::net::tcp::OwnedWriteHalf,
    line: &str,
    code: u16,
    text: &str,
) -> std::io::Result<()> {
    shared.lock().commands.push(SmtpCommand { line: line.to_string(), code });
    write.write_all(format!("{code} {text}\r\n").as_bytes()).await
}

/// A running sink: what it received, one-off failures, stopping it.
pub struct FakeSmtpHandle {
    server: crate::server::Running,
    shared: Arc<Shared>,
}

impl FakeSmtpHandle {
    pub fn host(&self) -> String {
        self.server.addr().ip().to_string()
    }

    pub fn port(&self) -> u16 {
        self.server.addr().port()
    }

    /// The messages accepted, oldest first.
    pub fn mails(&self) -> Vec<ReceivedMail> {
        self.shared.lock().mails.clone()
    }

    /// Every command with its reply code (credentials never recorded).
    pub fn commands(&self) -> Vec<SmtpCommand> {
        self.shared.lock().commands.clone()
    }

    /// Answers the next `DATA` with `code` and `text` (such as 451 or 554) instead of accepting it.
    pub fn fail_next_data(&self, code: u16, text: &str) {
        self.shared.lock().failures.push_back((code, text.to_string()));
    }

    pub async fn shutdown(mut self) {
        self.server.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// Sends `lines` one by one, collecting each reply (multi-line replies joined); message lines after a
    /// `354` get no reply of their own, only the final dot does.
    async fn talk(port: u16, lines: &[&str]) -> Vec<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut out = vec![read_reply(&mut stream).await];
        let mut in_data = false;
        for l in lines {
            stream.write_all(format!("{l}\r\n").as_bytes()).await.unwrap();
            if in_data && *l != "." {
                continue;
            }
            let r = read_reply(&mut stream).await;
            in_data = r.starts_with("354");
            out.push(r);
        }
        out
    }

    async fn read_reply(stream: &mut TcpStream) -> String {
        let mut all = String::new();
        let mut buf = [0u8; 1024];
        loop {
            let n =
                tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.unwrap().unwrap();
            all.push_str(&String::from_utf8_lossy(&buf[..n]));
            // A reply is complete when its last line has a space after the code.
            if let Some(last) = all.trim_end().lines().last()
                && last.len() >= 4
                && last.as_bytes()[3] == b' '
                && all.ends_with("\r\n")
            {
                return all;
            }
            if n == 0 {
                return all;
            }
        }
    }

    fn code(r: &str) -> u16 {
        r.trim_end().lines().last().unwrap()[..3].parse().unwrap()
    }

    #[tokio::test]
    async fn accepts_a_well_formed_session_and_keeps_the_message() {
        let sink = FakeSmtp::start(FakeSmtpConfig::default()).await.unwrap();
        let r = talk(
            sink.port(),
            &[
                "EHLO client.example",
                "MAIL FROM:<a@shop.example>",
                "RCPT TO:<b@shop.example>",
                "DATA",
                "Subject: hi",
                "",
                "..dot-stuffed line",
                ".",
                "QUIT",
            ],
        )
        .await;
        let codes: Vec<u16> = r.iter().map(|r| code(r)).collect();
        assert_eq!(codes, vec![220, 250, 250, 250, 354, 250, 221], "{r:?}");
        let mails = sink.mails();
        assert_eq!(mails.len(), 1);
        assert_eq!(mails[0].from, "a@shop.example");
        assert_eq!(mails[0].to, vec!["b@shop.example".to_string()]);
        assert_eq!(mails[0].data, "Subject: hi\r\n\r\n.dot-stuffed line\r\n");
        assert!(!r[1].contains("AUTH"), "AUTH is advertised only with credentials: {}", r[1]);
        sink.shutdown().await;
    }

    #[tokio::test]
    async fn refuses_bad_sequences_and_paths() {
        let sink = FakeSmtp::start(FakeSmtpConfig::default()).await.unwrap();
        let r = talk(
            sink.port(),
            &[
                "MAIL FROM:<a@shop.example>",
                "EHLO",
                "EHLO c.example",
                "RCPT TO:<b@shop.example>",
                "DATA",
                "MAIL FROM:a@shop.example",
                "MAIL FROM:<a@shop.example>",
                "MAIL FROM:<a@shop.example>",
                "RCPT TO:<nodomain>",
                "DATA",
                "BOGUS",
                "STARTTLS",
                "QUIT",
            ],
        )
        .await;
        let codes: Vec<u16> = r.iter().map(|r| code(r)).collect();
        assert_eq!(
            codes,
            vec![220, 503, 501, 250, 503, 503, 501, 250, 503, 501, 503, 500, 502, 221],
            "{r:?}"
        );
        assert!(sink.mails().is_empty());
        sink.shutdown().await;
    }

    #[tokio::test]
    async fn requires_authentication_when_configured() {
        let config =
            FakeSmtpConfig { credentials: Some(("user".into(), "s3cret".into())), ..Default::default() };
        let sink = FakeSmtp::start(config).await.unwrap();
        let good = B64.encode("\0user\0s3cret");
        let bad = B64.encode("\0user\0wrong");
        let r = talk(
            sink.port(),
            &[
                "EHLO c.example",
                "MAIL FROM:<a@shop.example>",
                &format!("AUTH PLAIN {bad}"),
                &format!("AUTH PLAIN {good}"),
                &format!("AUTH PLAIN {good}"),
                "MAIL FROM:<a@shop.example>",
                "QUIT",
            ],
        )
        .await;
        let codes: Vec<u16> = r.iter().map(|r| code(r)).collect();
        assert_eq!(codes, vec![220, 250, 530, 535, 235, 503, 250, 221], "{r:?}");
        assert!(r[1].contains("AUTH PLAIN LOGIN"), "{}", r[1]);
        // LOGIN: two challenges.
        let r =
            talk(sink.port(), &["EHLO c.example", "AUTH LOGIN", &B64.encode("user"), &B64.encode("s3cret")])
                .await;
        let codes: Vec<u16> = r.iter().map(|r| code(r)).collect();
        assert_eq!(codes, vec![220, 250, 334, 334, 235], "{r:?}");
        assert!(sink.commands().iter().all(|c| !c.line.contains(&good)), "credentials are never recorded");
        sink.shutdown().await;
    }

    #[tokio::test]
    async fn queued_failures_and_size_limit() {
        let sink =
            FakeSmtp::start(FakeSmtpConfig { max_message_bytes: 64, ..Default::default() }).await.unwrap();
        sink.fail_next_data(451, "4.3.0 Try again later");
        let long = "x".repeat(100);
        let r = talk(
            sink.port(),
            &[
                "EHLO c.example",
                "MAIL FROM:<a@s.example>",
                "RCPT TO:<b@s.example>",
                "DATA",
                "short",
                ".",
                "MAIL FROM:<a@s.example>",
                "RCPT TO:<b@s.example>",
                "DATA",
                &long,
                ".",
                "MAIL FROM:<a@s.example>",
                "RCPT TO:<b@s.example>",
                "DATA",
                "short",
                ".",
            ],
        )
        .await;
        let codes: Vec<u16> = r.iter().map(|r| code(r)).collect();
        assert_eq!(
            codes,
            vec![220, 250, 250, 250, 354, 451, 250, 250, 354, 552, 250, 250, 354, 250],
            "{r:?}"
        );
        assert_eq!(sink.mails().len(), 1);
        sink.shutdown().await;
    }
}
