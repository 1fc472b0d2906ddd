//! A small DNS server on loopback answering SRV queries, so that RFC 3263 lookups need no
//! network.

use std::net::SocketAddr;

use tokio::net::UdpSocket;

/// One SRV record: priority, weight, port and target (a host name, or an address written as
/// one, which the system's resolver then takes as it is).
pub(crate) struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: &'static str,
}

/// Answers SRV queries for `name` with `records`; anything else gets NXDOMAIN. Returns the
/// server's address.
pub(crate) async fn srv_server(name: &'static str, records: Vec<Srv>) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind DNS");
    let addr = socket.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buffer = [0u8; 512];
        loop {
            let Ok((length, peer)) = socket.recv_from(&mut buffer).await else { return };
            if let Some(answer) = answer(&buffer[..length], name, &records) {
                let _ = socket.send_to(&answer, peer).await;
            }
        }
    });
    addr
}

/// The answer to `query`: `records` when it asks for `name`'s SRV records, else NXDOMAIN.
fn answer(query: &[u8], name: &str, records: &[Srv]) -> Option<Vec<u8>> {
    let length = query.len();
    if length < 12 {
        return None;
    }
    // The question: labels up to the zero byte, then type and class.
    let mut end = 12;
    while end < length && query[end] != 0 {
        end += 1 + query[end] as usize;
    }
    let question_end = end + 5;
    if question_end > length {
        return None;
    }
    let mut labels = Vec::new();
    let mut at = 12;
    while at < end {
        let len = query[at] as usize;
        labels.push(String::from_utf8_lossy(&query[at + 1..at + 1 + len]).to_ascii_lowercase());
        at += 1 + len;
    }
    let asked = labels.join(".");
    let qtype = u16::from_be_bytes([query[end + 1], query[end + 2]]);
    let found = asked == name && qtype == 33;
    let answers = if found { records.len() as u16 } else { 0 };
    let mut answer = Vec::new();
    answer.extend_from_slice(&query[..2]);
    answer.extend_from_slice(&[0x81, if found { 0x80 } else { 0x83 }]);
    answer.extend_from_slice(&[0, 1]);
    answer.extend_from_slice(&answers.to_be_bytes());
    answer.extend_from_slice(&[0, 0, 0, 0]);
    answer.extend_from_slice(&query[12..question_end]);
    if found {
        for record in records {
            answer.extend_from_slice(&[0xC0, 0x0C, 0, 33, 0, 1, 0, 0, 0, 60]);
            let mut rdata = Vec::new();
            rdata.extend_from_slice(&record.priority.to_be_bytes());
            rdata.extend_from_slice(&record.weight.to_be_bytes());
            rdata.extend_from_slice(&record.port.to_be_bytes());
            for label in record.target.split('.').filter(|label| !label.is_empty()) {
                rdata.push(label.len() as u8);
                rdata.extend_from_slice(label.as_bytes());
            }
            rdata.push(0);
            answer.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            answer.extend_from_slice(&rdata);
        }
    }
    Some(answer)
}
