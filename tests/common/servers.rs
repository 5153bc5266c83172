//! Private servers for tests that restart or stop them: a Postgres cluster and a RabbitMQ node of the test's
//! own, on free ports with their data under a temporary directory, stopped when dropped (also on a panic).
//! The shared servers the rest of the suite runs on are never touched.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// The newest installed Postgres's `bin` directory (Debian's layout: `/usr/lib/postgresql/VERSION/bin`).
fn pg_bin() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(root)
        .expect("Postgres is not installed under /usr/lib/postgresql (scripts/ensure-deps.sh --services)")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .max()
        .expect("no Postgres version under /usr/lib/postgresql");
    root.join(newest.to_string()).join("bin")
}

/// Runs `cmd`, failing loudly with its output unless it succeeds.
fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A Postgres cluster of the test's own. `initdb` refuses root, so the cluster belongs to the `postgres`
/// user and every `pg_ctl` runs as it (`runuser`).
pub struct PrivatePostgres {
    pub port: u16,
    dir: tempfile::TempDir,
}

impl PrivatePostgres {
    /// `initdb` (trust authentication) and start; takes about a second.
    pub fn start() -> PrivatePostgres {
        let dir = tempfile::tempdir().unwrap();
        run(
            Command::new("chown").arg("postgres").arg(dir.path()),
            "chown the cluster dir to postgres",
        );
        let pg = PrivatePostgres {
            port: free_port(),
            dir,
        };
        run(
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(pg_bin().join("initdb"))
                .arg("-D")
                .arg(pg.data())
                .args(["-A", "trust", "-U", "postgres", "--no-sync"]),
            "initdb",
        );
        pg.ctl(&["start"]);
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn ctl(&self, args: &[&str]) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        run(
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(pg_bin().join("pg_ctl"))
                .arg("-D")
                .arg(self.data())
                .arg("-l")
                .arg(self.dir.path().join("log"))
                .args(["-w", "-t", "60", "-m", "fast", "-o", &opts])
                .args(args)
                .stdout(Stdio::null()),
            &format!("pg_ctl {args:?}"),
        );
    }

    /// A fresh database on this cluster; its URL.
    pub async fn database(&self) -> String {
        use sqlx::Executor;
        let server = format!("postgres://postgres@127.0.0.1:{}", self.port);
        let mut conn =
            <sqlx::PgConnection as sqlx::Connection>::connect(&format!("{server}/postgres"))
                .await
                .expect("connect to the private Postgres");
        let name = super::unique("db");
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create database");
        format!("{server}/{name}")
    }

    /// `pg_ctl restart -m fast`: every connection is terminated, the server is back at once.
    pub fn restart(&self) {
        self.ctl(&["restart"]);
    }

    /// `pg_ctl stop -m fast`.
    pub fn stop(&self) {
        self.ctl(&["stop"]);
    }

    /// `pg_ctl start` after a [`stop`](Self::stop).
    pub fn start_again(&self) {
        self.ctl(&["start"]);
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(pg_bin().join("pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A RabbitMQ node of the test's own (`chaos-…@localhost`), AMQP on a free port, no plugins (the worker reads
/// in-flight counts from the management API only when `management_url` is set, and the fleet sets none).
/// It runs in the foreground as a child of the test (`rabbitmq-server -detached` left nodes that had failed
/// to boot), with its own Erlang cookie in a temporary `HOME`.
pub struct PrivateRabbit {
    pub port: u16,
    pub node: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl PrivateRabbit {
    /// Starts the node and waits until it runs (about 6 s here).
    pub fn start() -> PrivateRabbit {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let node = format!("{}@localhost", super::unique("chaos"));
        std::fs::write(dir.path().join("plugins"), "[].\n").unwrap();
        std::fs::write(
            dir.path().join("rabbitmq.conf"),
            format!("listeners.tcp.1 = 127.0.0.1:{port}\n"),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("server.out")).unwrap();
        let mut cmd = Command::new("/usr/lib/rabbitmq/bin/rabbitmq-server");
        Self::env(&mut cmd, dir.path(), &node);
        let child = cmd
            .env("RABBITMQ_DIST_PORT", free_port().to_string())
            .env("RABBITMQ_MNESIA_BASE", dir.path().join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.path().join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.path().join("plugins"))
            .env("RABBITMQ_CONFIG_FILE", dir.path().join("rabbitmq.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start rabbitmq-server");
        let rabbit = PrivateRabbit {
            port,
            node,
            child,
            dir,
        };
        let started = Instant::now();
        let pid = rabbit.dir.path().join("pid");
        rabbit.ctl(&["wait", pid.to_str().unwrap(), "--timeout", "90"]);
        eprintln!(
            "private RabbitMQ {} up on {} in {:?}",
            rabbit.node,
            port,
            started.elapsed()
        );
        rabbit
    }

    fn env(cmd: &mut Command, dir: &Path, node: &str) {
        cmd.env("HOME", dir)
            .env("RABBITMQ_NODENAME", node)
            .env("RABBITMQ_PID_FILE", dir.join("pid"));
    }

    /// `rabbitmqctl -n NODE ARGS`.
    pub fn ctl(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("/usr/lib/rabbitmq/bin/rabbitmqctl");
        Self::env(&mut cmd, self.dir.path(), &self.node);
        run(
            cmd.args(["-n", &self.node]).args(args),
            &format!("rabbitmqctl {args:?}"),
        )
    }

    /// The AMQP URL of this node.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// `rabbitmqctl stop_app`, `down` long, then `start_app`.
    pub fn restart_app(&self, down: Duration) {
        self.ctl(&["stop_app"]);
        std::thread::sleep(down);
        self.ctl(&["start_app"]);
    }
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        let mut cmd = Command::new("/usr/lib/rabbitmq/bin/rabbitmqctl");
        Self::env(&mut cmd, self.dir.path(), &self.node);
        let _ = cmd
            .args(["-n", &self.node, "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
