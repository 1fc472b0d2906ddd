#!/usr/bin/env python3
"""Memory per idle SIP connection in `ringer serve`: opens N TCP and then N TLS connections that
each exchange one CRLF keep-alive, and prints ringer's resident memory growth per connection.

    bench/idle-connections.py [N]        # default 2000; needs a release build (cargo build --release)
"""
import os, resource, socket, ssl, subprocess, sys, tempfile, time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RINGER = os.path.join(ROOT, "target", "release", "ringer")
TCP_PORT, TLS_PORT = 27060, 27061


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * N + 100)), hard))


def ping(conn):
    conn.sendall(b"\r\n\r\n")
    if conn.recv(16) != b"\r\n":
        raise RuntimeError("no keep-alive pong")


def measure(pid, label, connect):
    time.sleep(0.5)
    before = rss_kib(pid)
    conns = []
    for _ in range(N):
        conn = connect()
        ping(conn)
        conns.append(conn)
    time.sleep(1.0)
    after = rss_kib(pid)
    print(f"{label:5} {N:6d} idle connections: RSS {before} -> {after} KiB, {(after - before) / N:.1f} KiB per connection")
    for conn in conns:
        conn.close()
    return (after - before) / N


def main():
    raise_fd_limit()
    with tempfile.TemporaryDirectory() as work:
        subprocess.run([RINGER, "certs", "--domain", "localhost", "--out", work], check=True, stdout=subprocess.DEVNULL)
        config = os.path.join(work, "ringer.toml")
        with open(config, "w") as out:
            out.write(f"""[tas]
sip_uri = "sips:localhost:5061"
[core]
endpoint = "http://127.0.0.1:1"
[registrar]
initial_backoff = "10s"
[sip]
tcp_listen = "127.0.0.1:{TCP_PORT}"
tls_listen = "127.0.0.1:{TLS_PORT}"
cert_file = "{work}/server.pem"
key_file = "{work}/server.key"
max_connections = {4 * N}
max_connections_per_peer = {4 * N}
""")
        def fresh_server():
            return subprocess.Popen([RINGER, "serve", "--config", config], env={**os.environ, "RINGER_LOG": "warn"},
                                    stdout=subprocess.DEVNULL, preexec_fn=raise_fd_limit)

        context = ssl.create_default_context(cafile=os.path.join(work, "ca.pem"))
        kinds = [
            ("TCP", lambda: socket.create_connection(("127.0.0.1", TCP_PORT))),
            ("TLS", lambda: context.wrap_socket(socket.create_connection(("127.0.0.1", TLS_PORT)),
                                                server_hostname="localhost")),
        ]
        results = {}
        # Each kind in a fresh process, so that memory freed by one is not reused by the next.
        for label, connect in kinds:
            server = fresh_server()
            try:
                time.sleep(1.0)
                results[label] = measure(server.pid, label, connect)
            finally:
                server.terminate()
                server.wait(timeout=20)
        print(f"TLS adds {results['TLS'] - results['TCP']:.1f} KiB per connection (rustls buffers and session state)")


if __name__ == "__main__":
    main()
