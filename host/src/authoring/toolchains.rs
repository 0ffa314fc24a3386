//! The guest toolchains stephost installs for step authors
//! (`stephost step doctor --lang L --install`) and finds again when it
//! builds (`stephost step build`), without any change to `PATH`.
//!
//! Python and JavaScript get a directory of their own under
//! `$STEPHOST_HOME/toolchains/<name>-<version>`: componentize-py in a
//! virtual environment made with the machine's `python3` (pip), and jco
//! with componentize-js and preview2-shim from a generated `package.json`
//! that pins exactly what jco loads (npm). C comes from Debian's packages
//! (apt-get, as root; otherwise the exact `sudo` line is printed). Rust is
//! rustup's: the `wasm32-wasip2` target is added with `rustup`.
//!
//! The versions are the ones this repository tests with; they equal the
//! pins of `scripts/install-tools` (a test keeps them equal). A directory
//! counts as installed once its stamp file holds what it was installed
//! for, so an interrupted install is redone and a finished one is never
//! repeated.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use serde_json::json;

use super::Lang;

/// componentize-py, the Python toolchain.
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";
/// jco, the JavaScript toolchain's command line.
pub const JCO_VERSION: &str = "1.35.0";
/// componentize-js, which `jco componentize` runs.
pub const COMPONENTIZE_JS_VERSION: &str = "0.23.0";
/// preview2-shim, the WASI shim jco and componentize-js run their bundled
/// WebAssembly tools on (0.26.1 broke `jco componentize`; see
/// scripts/install-tools).
pub const PREVIEW2_SHIM_VERSION: &str = "0.26.0";
/// Debian bookworm's C toolchain for wasm32-wasi, pinned; an unpinned
/// install is the fallback when a point release has replaced one.
pub const C_PACKAGES: [&str; 4] = [
    "clang=1:14.0-55.7~deb12u1",
    "lld=1:14.0-55.7~deb12u1",
    "wasi-libc=0.0~git20220510.9886d3d-2",
    "libclang-rt-14-dev-wasm32=1:14.0.6-12",
];

const STAMP: &str = ".stephost-stamp";

/// A toolchain stephost installs into a directory of its own.
#[derive(Debug, Clone)]
pub struct Managed {
    /// Python or JavaScript.
    pub lang: Lang,
    /// The command `step build` runs (`componentize-py`, `jco`).
    pub program: &'static str,
    /// Its version.
    pub version: &'static str,
    /// `$STEPHOST_HOME/toolchains/<program>-<version>`.
    pub dir: PathBuf,
}

impl Managed {
    /// The managed toolchain of `lang` under `home`; `None` for Rust and C,
    /// which come from rustup and the system's packages.
    pub fn of(lang: Lang, home: &Path) -> Option<Self> {
        let (program, version) = match lang {
            Lang::Python => ("componentize-py", COMPONENTIZE_PY_VERSION),
            Lang::Js => ("jco", JCO_VERSION),
            Lang::Rust | Lang::C => return None,
        };
        Some(Self {
            lang,
            program,
            version,
            dir: home.join("toolchains").join(format!("{program}-{version}")),
        })
    }

    /// Where its commands are.
    pub fn bin(&self) -> PathBuf {
        match self.lang {
            Lang::Js => self.dir.join("node_modules").join(".bin"),
            _ => self.dir.join("bin"),
        }
    }

    /// What the stamp file holds once the install finished.
    fn want(&self) -> String {
        match self.lang {
            Lang::Js => format!(
                "jco@{JCO_VERSION} componentize-js@{COMPONENTIZE_JS_VERSION} preview2-shim@{PREVIEW2_SHIM_VERSION}"
            ),
            _ => format!("componentize-py=={COMPONENTIZE_PY_VERSION}"),
        }
    }

    /// Whether it is installed and complete: the stamp matches and the
    /// command exists (and, for the venv, its Python still starts: a venv
    /// breaks when the Python it was made from goes away).
    pub fn installed(&self) -> bool {
        let stamped =
            std::fs::read_to_string(self.dir.join(STAMP)).is_ok_and(|s| s.trim() == self.want());
        stamped
            && self.bin().join(self.program).exists()
            && (self.lang == Lang::Js
                || Command::new(self.bin().join("python"))
                    .args(["-c", ""])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success()))
    }
}

/// The `PATH` a build of `lang` runs with: the managed toolchain's
/// commands first when it is installed, then the caller's `PATH`.
pub fn search_path(lang: Lang, home: Option<&Path>) -> OsString {
    let mut dirs: Vec<PathBuf> = home
        .and_then(|h| Managed::of(lang, h))
        .filter(Managed::installed)
        .map(|m| vec![m.bin()])
        .unwrap_or_default();
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(dirs).unwrap_or_default()
}

/// The executable file `program` resolves to on `path`, as a shell would
/// find it.
pub fn which(program: &str, path: &OsString) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if program.contains('/') {
        return Some(PathBuf::from(program)).filter(|p| p.is_file());
    }
    std::env::split_paths(path)
        .map(|dir| dir.join(program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The command that installs `lang`'s toolchain.
pub fn install_command(lang: Lang) -> String {
    format!("stephost step doctor --lang {} --install", lang.as_str())
}

/// What the C install does: run apt-get (as root), or tell the user the
/// exact line to run with sudo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AptPlan {
    /// Run `apt-get` with these arguments.
    Run(Vec<String>),
    /// Not root: print this line and exit non-zero.
    Sudo(String),
}

/// The C install for a process that is (or is not) root.
pub fn apt_plan(root: bool) -> AptPlan {
    let mut args = vec!["install".to_owned(), "-y".into(), "-q".into()];
    args.extend(C_PACKAGES.iter().map(|p| (*p).to_owned()));
    if root {
        AptPlan::Run(args)
    } else {
        AptPlan::Sudo(format!("sudo apt-get {}", args.join(" ")))
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a tool whose output is chatter: it goes to stderr, and a failure
/// is an error naming the command.
fn run(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = cmd
        .stdout(Stdio::from(std::io::stderr()))
        .status()
        .with_context(|| format!("cannot run {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// Installs `lang`'s pinned toolchain (for Python and JavaScript under
/// `home`); `say` receives a line for each thing done. Installing what is
/// already installed does nothing and says so.
pub fn install(lang: Lang, home: Option<&Path>, say: &mut dyn FnMut(String)) -> anyhow::Result<()> {
    match lang {
        Lang::Python | Lang::Js => {
            let home = home
                .context("cannot tell where to install toolchains: set STEPHOST_HOME (or HOME)")?;
            let managed = Managed::of(lang, home).expect("python and js are managed");
            if managed.installed() {
                say(format!(
                    "{} {} is already installed in {}",
                    managed.program,
                    managed.version,
                    managed.dir.display()
                ));
                return Ok(());
            }
            // What is there is unfinished (no stamp, or another pin):
            // start from nothing, so an upgrade leaves nothing stale.
            if managed.dir.exists() {
                std::fs::remove_dir_all(&managed.dir)
                    .with_context(|| format!("cannot remove {}", managed.dir.display()))?;
            }
            std::fs::create_dir_all(&managed.dir)
                .with_context(|| format!("cannot create {}", managed.dir.display()))?;
            if lang == Lang::Python {
                install_python(&managed, say)?;
            } else {
                install_js(&managed, say)?;
            }
            std::fs::write(managed.dir.join(STAMP), managed.want() + "\n")?;
            say(format!(
                "installed {} {} in {}",
                managed.program,
                managed.version,
                managed.dir.display()
            ));
            Ok(())
        }
        Lang::C => {
            if super::doctor(lang).iter().all(|c| c.ok) {
                say("clang, lld, wasi-libc and the wasm32 compiler-rt builtins are already installed".into());
                return Ok(());
            }
            let path = std::env::var_os("PATH").unwrap_or_default();
            if which("apt-get", &path).is_none() {
                bail!(
                    "apt-get is not available: install clang, lld, wasi-libc and the wasm32 \
                     compiler-rt builtins with this system's package manager"
                );
            }
            let args = match apt_plan(is_root()) {
                AptPlan::Run(args) => args,
                AptPlan::Sudo(line) => bail!(
                    "installing the C toolchain needs root; run:\n  {line}\nthen `{}` again to check it",
                    "stephost step doctor --lang c"
                ),
            };
            say(format!("apt-get {}", args.join(" ")));
            let apt = |args: &[String]| {
                run(
                    Command::new("apt-get")
                        .args(args)
                        .env("DEBIAN_FRONTEND", "noninteractive"),
                    "apt-get",
                )
            };
            if apt(&args).is_err() {
                say("apt-get update (the package lists may be stale)".into());
                apt(&["update".into(), "-q".into()])?;
                if apt(&args).is_err() {
                    // A point release replaced a pinned version: take the
                    // current ones rather than fail.
                    let unpinned: Vec<String> = args
                        .iter()
                        .map(|a| a.split('=').next().unwrap_or(a).to_owned())
                        .collect();
                    say(format!(
                        "the pinned packages are not available; apt-get {}",
                        unpinned.join(" ")
                    ));
                    apt(&unpinned)?;
                }
            }
            say("installed the C toolchain from Debian's packages".into());
            Ok(())
        }
        Lang::Rust => {
            if super::doctor(lang).iter().all(|c| c.ok) {
                say("cargo and the wasm32-wasip2 target are already installed".into());
                return Ok(());
            }
            let path = std::env::var_os("PATH").unwrap_or_default();
            if which("rustup", &path).is_none() {
                bail!(
                    "rustup is not installed; install Rust first:\n  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh"
                );
            }
            say("rustup target add wasm32-wasip2".into());
            run(
                Command::new("rustup").args(["target", "add", "wasm32-wasip2"]),
                "rustup target add wasm32-wasip2",
            )?;
            Ok(())
        }
    }
}

fn install_python(managed: &Managed, say: &mut dyn FnMut(String)) -> anyhow::Result<()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let python = which("python3", &path).context(
        "python3 is not installed; install Python 3 with its venv module first \
         (Debian: apt-get install -y python3 python3-venv)",
    )?;
    say(format!(
        "{} -m venv {}",
        python.display(),
        managed.dir.display()
    ));
    run(
        Command::new(&python)
            .arg("-m")
            .arg("venv")
            .arg(&managed.dir),
        "python3 -m venv (on Debian the venv module is the python3-venv package)",
    )?;
    let want = managed.want();
    say(format!("pip install {want}"));
    run(
        Command::new(managed.bin().join("python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .arg(&want),
        &format!("pip install {want}"),
    )
}

/// The `package.json` that pins what jco loads. Two overrides make the
/// pins true for what jco imports at run time: jco 1.35.0 asks for
/// componentize-js ^0.22.0, which npm would otherwise nest under jco; and
/// componentize-js picks up whichever preview2-shim is hoisted, so one
/// copy is pinned for everybody.
pub fn js_package_json() -> serde_json::Value {
    json!({
        "name": "stephost-js-toolchain",
        "private": true,
        "description": "Written by `stephost step doctor --lang js --install`; do not edit.",
        "dependencies": {
            "@bytecodealliance/jco": JCO_VERSION,
            "@bytecodealliance/componentize-js": COMPONENTIZE_JS_VERSION,
            "@bytecodealliance/preview2-shim": PREVIEW2_SHIM_VERSION,
        },
        "overrides": {
            "@bytecodealliance/preview2-shim": "$@bytecodealliance/preview2-shim",
            "@bytecodealliance/jco": {
                "@bytecodealliance/componentize-js": "$@bytecodealliance/componentize-js"
            }
        }
    })
}

fn install_js(managed: &Managed, say: &mut dyn FnMut(String)) -> anyhow::Result<()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for tool in ["node", "npm"] {
        if which(tool, &path).is_none() {
            bail!(
                "{tool} is not installed; install Node.js 18 or later with npm first \
                 (Debian: apt-get install -y nodejs npm)"
            );
        }
    }
    std::fs::write(
        managed.dir.join("package.json"),
        serde_json::to_string_pretty(&js_package_json())? + "\n",
    )?;
    say(format!(
        "npm install @bytecodealliance/jco@{JCO_VERSION} @bytecodealliance/componentize-js@{COMPONENTIZE_JS_VERSION} @bytecodealliance/preview2-shim@{PREVIEW2_SHIM_VERSION} in {}",
        managed.dir.display()
    ));
    run(
        Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&managed.dir),
        "npm install",
    )?;
    // The componentize-js jco imports: the first one found walking up from
    // jco's own directory (node's resolution order).
    let modules = managed.dir.join("node_modules");
    let jco = modules.join("@bytecodealliance").join("jco");
    let found = [jco.join("node_modules"), modules]
        .iter()
        .map(|m| m.join("@bytecodealliance/componentize-js/package.json"))
        .find(|p| p.exists())
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["version"].as_str().map(str::to_owned));
    if found.as_deref() != Some(COMPONENTIZE_JS_VERSION) {
        bail!(
            "after npm install, jco loads componentize-js {}, not {COMPONENTIZE_JS_VERSION}",
            found.as_deref().unwrap_or("(none)")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pins equal those of scripts/install-tools, which builds this
    /// repository's own test components.
    #[test]
    fn the_pins_are_the_install_scripts() {
        let script = include_str!("../../../scripts/install-tools");
        let pin = |name: &str| {
            script
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("scripts/install-tools has no {name}"))
                .to_owned()
        };
        assert_eq!(pin("COMPONENTIZE_PY_VERSION"), COMPONENTIZE_PY_VERSION);
        assert_eq!(pin("JCO_VERSION"), JCO_VERSION);
        assert_eq!(pin("COMPONENTIZE_JS_VERSION"), COMPONENTIZE_JS_VERSION);
        assert_eq!(pin("PREVIEW2_SHIM_VERSION"), PREVIEW2_SHIM_VERSION);
        for package in C_PACKAGES {
            assert!(
                script.contains(&format!("\"{package}\"")),
                "scripts/install-tools does not pin {package}"
            );
        }
    }

    #[test]
    fn c_installs_as_root_or_prints_the_sudo_line() {
        let all = C_PACKAGES.join(" ");
        assert_eq!(
            apt_plan(false),
            AptPlan::Sudo(format!("sudo apt-get install -y -q {all}"))
        );
        let AptPlan::Run(args) = apt_plan(true) else {
            panic!("root runs apt-get");
        };
        assert_eq!(args.join(" "), format!("install -y -q {all}"));
    }

    #[test]
    fn a_managed_toolchain_counts_once_stamped_and_goes_first_on_the_path() {
        let home = tempfile::tempdir().unwrap();
        let m = Managed::of(Lang::Js, home.path()).unwrap();
        assert_eq!(
            m.dir,
            home.path().join(format!("toolchains/jco-{JCO_VERSION}"))
        );
        let bin = m.bin();
        std::fs::create_dir_all(&bin).unwrap();
        let jco = bin.join("jco");
        std::fs::write(&jco, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&jco, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Without the stamp it is an unfinished install: not on the path.
        assert!(!m.installed());
        let path = search_path(Lang::Js, Some(home.path()));
        assert_ne!(which("jco", &path).as_deref(), Some(jco.as_path()));
        std::fs::write(m.dir.join(STAMP), m.want()).unwrap();
        assert!(m.installed());
        let path = search_path(Lang::Js, Some(home.path()));
        assert_eq!(which("jco", &path).as_deref(), Some(jco.as_path()));
        // Another pin is another install.
        std::fs::write(m.dir.join(STAMP), "jco@0.1.0").unwrap();
        assert!(!m.installed());
        assert!(Managed::of(Lang::C, home.path()).is_none());
    }
}
