//! Child processes of a benchmark, and what /proc says about them.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn spawn(name: &str, bin: &str, args: &[&str], env: &[(String, String)], log: &str) -> Proc {
        let f = std::fs::File::create(log).unwrap();
        let child = Command::new(bin)
            .args(args)
            .envs(env.iter().cloned())
            .stdout(Stdio::from(f.try_clone().unwrap()))
            .stderr(Stdio::from(f))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
        Proc { child, name: name.to_string() }
    }

    /// Resident memory in MiB.
    pub fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(0.0)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
    }
}

/// user + system CPU seconds of process `pid` so far (0 if it is gone).
fn cpu_secs_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ut: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let st: f64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    (ut + st) / clk_tck()
}

/// The first process whose command line contains `needle` (the Kafka broker, ...).
fn find_pid(needle: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        (pid != std::process::id() && String::from_utf8_lossy(&cmd).contains(needle)).then_some(pid)
    })
}

/// CPU seconds the whole machine has spent not idle (all cores), from /proc/stat.
fn machine_busy_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<f64> = stat.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is already counted in user)
    let busy: f64 = f.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum();
    busy / clk_tck()
}

/// Where the CPU went over a stretch of time: the given servers (gateway, bare server), this
/// process (the load generator, or the producer of the Kafka ceiling), the Kafka broker, and
/// the machine as a whole.
pub struct CpuShares {
    pids: Vec<(&'static str, u32)>,
    start: Vec<f64>,
    machine: f64,
    at: Instant,
}

/// CPU seconds spent over a stretch: each watched process, and the machine (all cores).
pub struct CpuUsage {
    pub wall: f64,
    pub procs: Vec<(&'static str, f64)>,
    pub machine: f64,
}

impl CpuShares {
    pub fn start(servers: &[(&'static str, u32)]) -> Self {
        let mut pids = servers.to_vec();
        pids.push(("load generator", std::process::id()));
        if let Some(k) = find_pid("kafka.Kafka") {
            pids.push(("Kafka", k));
        }
        if let Some(c) = find_pid("org.apache.cassandra.service.CassandraDaemon") {
            pids.push(("Cassandra", c));
        }
        let start = pids.iter().map(|(_, p)| cpu_secs_of(*p)).collect();
        CpuShares { pids, start, machine: machine_busy_secs(), at: Instant::now() }
    }

    pub fn usage(&self) -> CpuUsage {
        let procs = self.pids.iter().zip(&self.start).map(|((name, pid), s0)| (*name, cpu_secs_of(*pid) - s0)).collect();
        CpuUsage { wall: self.at.elapsed().as_secs_f64().max(1e-3), procs, machine: machine_busy_secs() - self.machine }
    }
}

impl CpuUsage {
    /// "gateway 71%, load generator 64%, Kafka 33%, machine 172% of 200%" (% of one core).
    pub fn percent(&self) -> String {
        let mut parts: Vec<String> = self.procs.iter().map(|(name, s)| format!("{name} {:.0}%", s / self.wall * 100.0)).collect();
        parts.push(format!("machine {}", self.machine_busy()));
        parts.join(", ")
    }

    /// "gateway 32.1, load generator 6.7, Kafka 7.2, machine 46.4 (194% of 200%)": µs of
    /// CPU per unit of work (a request, a record).
    pub fn micros_per(&self, units: f64) -> String {
        let mut parts: Vec<String> = self.procs.iter().map(|(name, s)| format!("{name} {:.1}", micros(*s, units))).collect();
        parts.push(format!("machine {:.1} ({})", self.machine_micros_per(units), self.machine_busy()));
        parts.join(", ")
    }

    /// "172% of 200%"
    fn machine_busy(&self) -> String {
        format!("{:.0}% of {}%", self.machine / self.wall * 100.0, cores() * 100)
    }

    /// CPU seconds of the watched process called `name` (0 if none is).
    pub fn secs_of(&self, name: &str) -> f64 {
        self.procs.iter().find(|(n, _)| *n == name).map(|(_, s)| *s).unwrap_or(0.0)
    }

    /// Machine CPU µs per unit of work.
    pub fn machine_micros_per(&self, units: f64) -> f64 {
        micros(self.machine, units)
    }
}

/// µs of CPU per unit, from CPU seconds over `units` units.
fn micros(secs: f64, units: f64) -> f64 {
    secs / units.max(1.0) * 1e6
}

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn clk_tck() -> f64 {
    static TCK: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TCK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

pub fn wait_http(port: u16, path: &str, timeout: Duration) {
    let t = Instant::now();
    while t.elapsed() < timeout {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            let _ = s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes());
            let mut buf = String::new();
            let _ = s.read_to_string(&mut buf);
            if buf.starts_with("HTTP/1.1 200") {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("127.0.0.1:{port}{path} not ready after {timeout:?}");
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A process's `/metrics` text (empty if it does not answer within 2 s: a hung worker must
/// not hold a bench's wait past its deadline).
pub async fn scrape(port: u16) -> String {
    let request = crate::load::client().get(format!("http://127.0.0.1:{port}/metrics")).timeout(std::time::Duration::from_secs(2));
    match request.send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}
