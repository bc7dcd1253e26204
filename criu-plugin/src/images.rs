//! Our files in CRIU's image directory: created 0600, never following a
//! symlink, never overwriting; the content is a `sctp-repair` snapshot
//! (which carries its own magic, format version and checksum).

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, RawFd};

/// Image file name for CRIU file id `id`.
pub fn sctp_image_name(id: i32) -> String {
    format!("epcmig-sctp-{id:08x}.img")
}

/// Image file name for the gtp device with `ifindex` (one netns per dump:
/// the devices of the dumped tree's network namespace).
pub fn gtp_image_name(ifindex: u32) -> String {
    format!("epcmig-gtp-{ifindex}.img")
}

/// Our gtp image files in image directory `dir`, sorted.
pub fn gtp_images(dir: RawFd) -> std::io::Result<Vec<String>> {
    images_named(dir, "epcmig-gtp-")
}

/// Our SCTP image files in image directory `dir`, sorted.
pub fn sctp_images(dir: RawFd) -> std::io::Result<Vec<String>> {
    images_named(dir, "epcmig-sctp-")
}

fn images_named(dir: RawFd, prefix: &str) -> std::io::Result<Vec<String>> {
    let mut v = names_starting(dir, prefix)?;
    v.retain(|n| n.ends_with(".img"));
    v.sort();
    Ok(v)
}

/// The names in image directory `dir` that start with `prefix`.
fn names_starting(dir: RawFd, prefix: &str) -> std::io::Result<Vec<String>> {
    Ok(std::fs::read_dir(format!("/proc/self/fd/{dir}"))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect())
}

/// Removes our files left in image directory `dir` by an earlier dump
/// into it (podman checkpoints into the same directory every time; CRIU
/// overwrites its own images, and ours are written only as new files).
/// Returns how many.
pub fn remove_stale(dir: RawFd) -> std::io::Result<usize> {
    let mut n = 0;
    for name in names_starting(dir, "epcmig-")? {
        let c = CString::new(name).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: valid dirfd and NUL-terminated name; unlinkat does not
        // follow a symlink, it removes the link.
        if unsafe { libc::unlinkat(dir, c.as_ptr(), 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        n += 1;
    }
    Ok(n)
}

/// Whether image file `name` exists in `dir` (as any kind of file).
pub fn exists(dir: RawFd, name: &str) -> bool {
    std::fs::symlink_metadata(format!("/proc/self/fd/{dir}/{name}")).is_ok()
}

/// CRIU's log levels (criu-log.h) the plugin writes at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Level {
    /// LOG_ERROR: a failure (shown with any -v).
    Error = 1,
    /// LOG_INFO: what was done (runc and podman run criu at -v4; the
    /// command line's default, -v2, leaves it out).
    Info = 3,
}

/// Writes `msg` to CRIU's log at `level` (its `print_on_level()` export),
/// or to stderr outside criu.
pub fn criu_log(level: Level, msg: &str) {
    type PrintOnLevel = unsafe extern "C" fn(libc::c_uint, *const libc::c_char, ...);
    let name = c"print_on_level";
    // SAFETY: dlsym on the global namespace with a NUL-terminated name.
    let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    let line = CString::new(format!("{msg}\n").replace('\0', " ")).unwrap_or_default();
    if sym.is_null() {
        eprint!("{}", line.to_string_lossy());
        return;
    }
    // SAFETY: criu exports print_on_level(unsigned int, const char *, ...)
    // (criu-log.h); we pass a "%s" format and one C string.
    unsafe {
        let f: PrintOnLevel = std::mem::transmute::<*mut libc::c_void, PrintOnLevel>(sym);
        f(level as libc::c_uint, c"%s".as_ptr(), line.as_ptr());
    }
}

/// Calls `int name(void)`, a function the criu binary exports for
/// plugins (criu-plugin.h); None if this criu has no such export.
fn call_criu_int_fn(name: &std::ffi::CStr) -> Option<libc::c_int> {
    type IntFn = unsafe extern "C" fn() -> libc::c_int;
    // SAFETY: dlsym on the global namespace with a NUL-terminated name.
    let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    if sym.is_null() {
        return None;
    }
    // SAFETY: the callers name criu exports declared `int f(void)`.
    let f: IntFn = unsafe { std::mem::transmute::<*mut libc::c_void, IntFn>(sym) };
    // SAFETY: calling the criu function as declared.
    Some(unsafe { f() })
}

/// What criu says becomes of the dumped tasks when the dump ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpedTasks {
    /// This criu does not say (no `criu_dumped_tasks_live_on()`).
    NotReported,
    /// Not decided yet: the dump has not finished.
    Undecided,
    /// They go on, running or stopped.
    LiveOn,
    /// They are killed.
    Killed,
}

/// Whether the dumped tasks go on after the dump ends (running or
/// stopped) rather than being killed, as criu decided it
/// (`criu_dumped_tasks_live_on()`, criu-patches/0003).
pub fn dumped_tasks() -> DumpedTasks {
    match call_criu_int_fn(c"criu_dumped_tasks_live_on") {
        None => DumpedTasks::NotReported,
        Some(v) if v < 0 => DumpedTasks::Undecided,
        Some(0) => DumpedTasks::Killed,
        Some(_) => DumpedTasks::LiveOn,
    }
}

/// The fd of CRIU's image directory (an export of the criu binary).
pub fn image_dir() -> std::io::Result<RawFd> {
    let Some(fd) = call_criu_int_fn(c"criu_get_image_dir") else {
        return Err(std::io::Error::other(
            "criu_get_image_dir() not found: not running inside criu",
        ));
    };
    if fd < 0 {
        return Err(std::io::Error::other("criu has no image directory open"));
    }
    Ok(fd)
}

fn openat(dir: RawFd, name: &str, flags: libc::c_int) -> std::io::Result<File> {
    let c = CString::new(name).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: valid dirfd and NUL-terminated name; the new fd is owned by
    // the File below.
    let fd = unsafe {
        libc::openat(
            dir,
            c.as_ptr(),
            flags | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            0o600,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fresh fd we own.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Writes a new image file (fails if it exists or is a symlink).
pub fn write(dir: RawFd, name: &str, data: &[u8]) -> std::io::Result<()> {
    let mut f = openat(dir, name, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL)?;
    f.write_all(data)?;
    f.sync_all()
}

/// Reads an image file (refusing symlinks and anything but a regular
/// file: a FIFO planted in the image dir must not block the restore), at
/// most `limit` bytes.
pub fn read(dir: RawFd, name: &str, limit: u64) -> std::io::Result<Vec<u8>> {
    let f = openat(dir, name, libc::O_RDONLY | libc::O_NONBLOCK)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other(format!(
            "{name} is not a regular file"
        )));
    }
    let mut v = Vec::new();
    f.take(limit + 1).read_to_end(&mut v)?;
    if v.len() as u64 > limit {
        return Err(std::io::Error::other(format!(
            "{name} is larger than {limit} bytes"
        )));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// An empty directory `name` (per process) and an open fd of it.
    fn scratch(name: &str) -> (std::path::PathBuf, File) {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let d = File::open(&dir).expect("open dir");
        (dir, d)
    }

    #[test]
    fn read_refuses_symlinks_fifos_and_oversized_files() {
        let (dir, d) = scratch("epcmig-images");
        let fd = d.as_raw_fd();
        write(fd, "a.img", b"12345").expect("write");
        assert_eq!(read(fd, "a.img", 5).expect("read"), b"12345");
        assert!(read(fd, "a.img", 4).is_err(), "over the limit");
        assert!(write(fd, "a.img", b"x").is_err(), "overwrote");
        std::os::unix::fs::symlink(dir.join("a.img"), dir.join("l.img")).expect("symlink");
        let e = read(fd, "l.img", 10).expect_err("followed a symlink");
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
        let fifo = dir.join("f.img");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        let e = read(fd, "f.img", 10).expect_err("read a FIFO");
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn stale_files_of_ours_go_and_nothing_else() {
        let (dir, d) = scratch("epcmig-stale");
        let fd = d.as_raw_fd();
        write(fd, "epcmig-sctp-00000008.img", b"old").expect("write");
        write(fd, "core-1.img", b"criu's").expect("write");
        std::os::unix::fs::symlink(dir.join("core-1.img"), dir.join("epcmig-gtp-3.img"))
            .expect("symlink");
        assert_eq!(remove_stale(fd).expect("remove"), 2);
        assert!(exists(fd, "core-1.img"), "a file not ours went");
        assert!(!exists(fd, "epcmig-sctp-00000008.img"));
        write(fd, "epcmig-sctp-00000008.img", b"new").expect("a new dump writes again");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
