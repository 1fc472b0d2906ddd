//! A network namespace of the test's own (util-linux `unshare` and `nsenter`, iproute2, root): programs
//! started in it have a loopback of their own, so a test of well-known ports (`ringer serve`'s
//! embedded defaults on 5060/5061/5070/5071) runs while another ringer holds them outside.

use std::process::{Child, Stdio};

/// A network namespace held open by a sleeping process; gone when dropped.
pub(crate) struct NetNs {
    holder: Child,
}

impl NetNs {
    /// A new namespace with its loopback up; `None` outside CI where that is not possible
    /// (not root, or no util-linux): the test then says so and passes. Under CI=true it fails.
    pub(crate) fn new() -> Option<Self> {
        let holder = std::process::Command::new("unshare")
            .args(["--net", "--", "sleep", "3600"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let made = holder.map_err(|error| error.to_string()).and_then(|holder| {
            let namespace = NetNs { holder };
            // `unshare` has set the namespace up once its child runs `sleep`.
            let path = format!("/proc/{}/ns/net", namespace.holder.id());
            for _ in 0..100 {
                let own = std::fs::read_link("/proc/self/ns/net").ok();
                if std::fs::read_link(&path).ok().is_some_and(|ns| Some(ns) != own) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            // Loopback, and an interface with a default route as a host has: the WebRTC
            // stack's interface and route lookups fail (ENODEV) on a bare loopback.
            let setup = "ip link set lo up && ip link add ringer0 type veth peer name ringer1 \
                && ip addr add 10.200.0.1/24 dev ringer0 && ip link set ringer0 up && ip link set ringer1 up \
                && ip route add default via 10.200.0.2";
            let up = std::process::Command::new("nsenter")
                .arg(format!("--net={path}"))
                .args(["--", "sh", "-c", setup])
                .output()
                .map_err(|error| error.to_string())?;
            match up.status.success() {
                true => Ok(namespace),
                false => Err(String::from_utf8_lossy(&up.stderr).into_owned()),
            }
        });
        match made {
            Ok(namespace) => Some(namespace),
            Err(error) => {
                let message = format!("no network namespace of the test's own (needs root, unshare and nsenter from util-linux, ip from iproute2): {error}");
                assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
                eprintln!("SKIPPED outside CI: {message}");
                None
            }
        }
    }

    /// `program` to be run inside the namespace.
    pub(crate) fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("nsenter");
        command.arg(format!("--net=/proc/{}/ns/net", self.holder.id())).arg("--").arg(program);
        command
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}
