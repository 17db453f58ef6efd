use std::time::{Duration, Instant};
use std::sync::{Arc, atomic::{AtomicBool, Ordering}};
use netray_exec::*;
fn burst(n: usize) -> f64 {
    let p = std::ffi::CString::new("/bin/true").unwrap();
    let argv = [p.as_ptr(), std::ptr::null()]; let envp = [std::ptr::null()];
    let t = Instant::now();
    for _ in 0..n { unsafe { let pid = libc::fork(); if pid == 0 { libc::execve(p.as_ptr(), argv.as_ptr(), envp.as_ptr()); libc::_exit(1);} let mut s=0; libc::waitpid(pid,&mut s,0);} }
    t.elapsed().as_secs_f64()*1e6/n as f64
}
fn main() {
    let mode = std::env::args().nth(1).unwrap();
    let n = 300;
    for _ in 0..3 {
        let base = burst(n);
        let other = match mode.as_str() {
            "poll" => { let stop = Arc::new(AtomicBool::new(false)); let s2=stop.clone();
                let (tx,rx)=std::sync::mpsc::channel();
                let h = std::thread::spawn(move || { let mut t = ExecTracer::start(Filter::default()).unwrap(); tx.send(()).unwrap(); while !s2.load(Ordering::Relaxed) { t.poll(Duration::from_millis(50)).unwrap(); } });
                rx.recv().unwrap(); let r = burst(n); stop.store(true, Ordering::Relaxed); h.join().unwrap(); r }
            "nopoll" => { let t = ExecTracer::start(Filter::default()).unwrap(); let r = burst(n); drop(t); r }
            "filtered" => { let t = ExecTracer::start(Filter{comm: Some("zzz".into()), ..Default::default()}).unwrap(); let r = burst(n); drop(t); r }
            "pidfilt" => { let t = ExecTracer::start(Filter{pid: Some(1), ..Default::default()}).unwrap(); let r = burst(n); drop(t); r }
            "thread" => { let stop = Arc::new(AtomicBool::new(false)); let s2=stop.clone();
                let h = std::thread::spawn(move || { while !s2.load(Ordering::Relaxed) { std::thread::sleep(Duration::from_millis(50)); } });
                let r = burst(n); stop.store(true, Ordering::Relaxed); h.join().unwrap(); r }
            _ => burst(n),
        };
        println!("{mode}: base {base:.0} other {other:.0}");
    }
}
