//! `ja3svc._native`: the PyO3 binding of `ja3svc-engine`. Thin on purpose: Python hands in
//! capture bytes a chunk at a time and gets back, per chunk, either the finished JSON lines
//! (the default output, formatted in Rust: no Python object per field) or one dict per hello
//! for the other outputs, plus the counters at the end. The GIL is released while Rust works.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::IntoPyObjectExt;
use pyo3::types::{PyDict, PyList, PyTuple};

use ja3svc_engine::capture::{CaptureError, CaptureStream};
use ja3svc_engine::fingerprints::{DovecotProfile, Memo};
use ja3svc_engine::hello::{ascii_backslashreplace, Hello};
use ja3svc_engine::json::{write_addr, write_record};
use ja3svc_engine::store_row::{clip, store_row, StoreRow, STORE_COLUMNS};
use ja3svc_engine::{Engine, Sighting};

/// Bytes the engine reads from a capture file per read.
const CHUNK_SIZE: usize = 1 << 20;
/// Reads per `feed_file` call. Each call takes the GIL back once, and while another thread
/// holds it (the sighting writer of `--store`, binding rows) that can take up to the
/// interpreter's switch interval, 5 ms: at 1 MiB a call that was seconds per gigabyte.
const CHUNKS_PER_CALL: usize = 16;
/// ... unless this many hellos are waiting, which bounds the memory of one call's output.
const MAX_FOUND_PER_CALL: usize = 4096;

/// One capture through one engine.
#[pyclass(module = "ja3svc._native")]
struct PcapRun {
    /// The input's name, the "file" of every record.
    label: String,
    stream: CaptureStream,
    engine: Engine,
    profile: DovecotProfile,
    memo: Memo,
    /// The capture file when Rust reads it itself (`read_file`).
    file: Option<std::fs::File>,
    json: bool,
    /// For `--store`: the sensor (clipped to its column) of the database rows (`StoreRow`)
    /// handed back beside the output.
    store_sensor: Option<String>,
    error: Option<CaptureError>,
    /// A read error after some chunks of a `feed_file` call were read: raised by the next call.
    read_error: Option<std::io::Error>,
    finished: bool,
}

impl PcapRun {
    /// Push bytes (or the end of input) through reader and engine; no Python involved.
    fn work(&mut self, chunk: Option<&[u8]>) -> Option<CaptureError> {
        if self.error.is_some() || self.finished {
            return None;
        }
        let engine = &mut self.engine;
        let mut sink = |ts: f64, linktype: u32, frame: &[u8], _wire: u64| {
            engine.feed_frame(ts, linktype, frame);
        };
        let result = match chunk {
            Some(c) => self.stream.feed(c, &mut sink),
            None => self.stream.finish(&mut sink),
        };
        let error = result.err();
        if chunk.is_none() || error.is_some() {
            // End of input or damage: what was read is all there will be.
            self.finished = true;
            if self.stream.format() != "" {
                self.engine.finish();
            }
        }
        error
    }

    /// Like `work` with the next chunks, read from the capture file in Rust. Ok(false) at its end.
    fn work_file(&mut self) -> std::io::Result<bool> {
        if let Some(e) = self.read_error.take() {
            return Err(e);
        }
        if self.error.is_some() || self.finished {
            return Ok(false);
        }
        let file = match self.file.as_mut() {
            Some(f) => f,
            None => return Ok(false),
        };
        let mut read_any = false;
        for _ in 0..CHUNKS_PER_CALL {
            let engine = &mut self.engine;
            let mut sink = |ts: f64, linktype: u32, frame: &[u8], _wire: u64| {
                engine.feed_frame(ts, linktype, frame);
            };
            match self.stream.feed_from(file, CHUNK_SIZE, &mut sink) {
                Ok(Ok(0)) => break,
                Ok(Ok(_)) => read_any = true,
                Ok(Err(e)) => {
                    self.finished = true;
                    if self.stream.format() != "" {
                        self.engine.finish();
                    }
                    self.error = Some(e);
                    return Ok(false);
                }
                // The hellos of the chunks read before it are handed over first.
                Err(e) if read_any => {
                    self.read_error = Some(e);
                    break;
                }
                Err(e) => return Err(e),
            }
            if self.engine.found.len() >= MAX_FOUND_PER_CALL {
                break;
            }
        }
        Ok(read_any)
    }

    /// What the found hellos become without Python: the JSON lines (with `json`) and the
    /// database rows (with a store sensor). With `json` and no rows wanted, the hellos are done.
    fn render(&mut self) -> (String, Vec<StoreRow>) {
        let mut out = String::new();
        if self.json {
            out.reserve(self.engine.found.len() * 700);
            for s in &self.engine.found {
                write_record(s, &self.label, self.profile, &mut self.memo, &mut out);
            }
        }
        let rows = match &self.store_sensor {
            Some(sensor) => self
                .engine
                .found
                .iter()
                .map(|s| store_row(s, sensor, self.profile, &mut self.memo))
                .collect(),
            None => Vec::new(),
        };
        if self.json {
            self.engine.found.clear();
        }
        (out, rows)
    }

    /// The found hellos as the caller wants them: the JSON text, or (without `json`) a list
    /// of dicts; with a store sensor, the pair (that, list of row tuples).
    fn take_found<'py>(
        &mut self,
        py: Python<'py>,
        (text, rows): (String, Vec<StoreRow>),
    ) -> PyResult<Bound<'py, PyAny>> {
        let out = if self.json {
            text.into_pyobject(py)?.into_any()
        } else {
            let list = PyList::empty(py);
            let found: Vec<Sighting> = self.engine.found.drain(..).collect();
            for s in &found {
                list.append(record_dict(py, s, &self.label, self.profile, &mut self.memo)?)?;
            }
            list.into_any()
        };
        if self.store_sensor.is_none() {
            return Ok(out);
        }
        let tuples = rows.into_iter().map(|r| row_tuple(py, r)).collect::<PyResult<Vec<_>>>()?;
        Ok((out, PyList::new(py, tuples)?).into_pyobject(py)?.into_any())
    }

    fn step<'py>(&mut self, py: Python<'py>, chunk: Option<&[u8]>) -> PyResult<Bound<'py, PyAny>> {
        let (error, rendered) = py.detach(|| {
            let e = self.work(chunk);
            (e, self.render())
        });
        if error.is_some() {
            self.error = error;
        }
        self.take_found(py, rendered)
    }
}

/// An engine's counters as a dict (PcapRun's and LiveRun's `counters`).
fn counters_dict<'py>(py: Python<'py>, engine: &Engine) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, v) in &engine.stats.map {
        d.set_item(k.as_ref(), *v)?;
    }
    Ok(d)
}

/// An engine's flow-table counters as a dict (PcapRun's and LiveRun's `flow_stats`).
fn flow_stats_dict<'py>(py: Python<'py>, engine: &Engine) -> PyResult<Bound<'py, PyDict>> {
    let s = engine.flows.stats;
    let d = PyDict::new(py);
    d.set_item("flows", s.flows)?;
    d.set_item("evicted_full", s.evicted_full)?;
    d.set_item("expired_idle", s.expired_idle)?;
    d.set_item("closed", s.closed)?;
    Ok(d)
}

fn addr_str(a: &ja3svc_engine::engine::Addr) -> String {
    let mut s = String::new();
    write_addr(a, &mut s);
    s
}

/// A `StoreRow` as the tuple the writer takes (`STORE_COLUMNS` order).
fn row_tuple(py: Python<'_>, r: StoreRow) -> PyResult<Bound<'_, PyTuple>> {
    fn obj<'py, T: IntoPyObject<'py>>(py: Python<'py>, v: T) -> PyResult<Bound<'py, PyAny>> {
        v.into_bound_py_any(py)
    }
    let items = [
        obj(py, r.sensor)?,
        obj(py, r.ts)?,
        obj(py, r.src)?,
        obj(py, r.sport)?,
        obj(py, r.dst)?,
        obj(py, r.dport)?,
        obj(py, r.hello)?,
        obj(py, r.hello_index)?,
        obj(py, r.transport)?,
        obj(py, r.sni)?,
        obj(py, r.alpn)?,
        obj(py, r.tls_version)?,
        obj(py, r.ja3_hash)?,
        obj(py, r.ja3n_hash)?,
        obj(py, r.ja4)?,
        obj(py, r.ja3_dovecot_hash)?,
        obj(py, r.ja3s_hash)?,
        obj(py, r.ja3_dovecot_hashes)?,
        obj(py, r.ja3)?,
        obj(py, r.ja3n)?,
        obj(py, r.ja4_r)?,
        obj(py, r.ja3_dovecot)?,
        obj(py, r.ja3s)?,
        obj(py, r.dovecot_openssl30)?,
        obj(py, r.dovecot_openssl32)?,
    ];
    debug_assert_eq!(items.len(), STORE_COLUMNS.len());
    PyTuple::new(py, items)
}

/// `{"file": ..., "frame": ..., **HelloSighting.as_dict(profile)}`, key for key.
fn record_dict<'py>(
    py: Python<'py>,
    s: &Sighting,
    label: &str,
    profile: DovecotProfile,
    memo: &mut Memo,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("file", label)?;
    d.set_item("frame", s.frame)?;
    d.set_item("ts", s.ts)?;
    d.set_item("src", addr_str(&s.src))?;
    d.set_item("sport", s.sport)?;
    d.set_item("dst", addr_str(&s.dst))?;
    d.set_item("dport", s.dport)?;
    d.set_item("transport", s.transport.as_str())?;
    match &s.hello {
        Hello::Client(h) => {
            d.set_item("hello", "client")?;
            d.set_item("index", s.index)?;
            d.set_item("sni", h.sni.as_deref())?;
            let alpn: Vec<String> = h.alpn.iter().map(|a| ascii_backslashreplace(a)).collect();
            d.set_item("alpn", alpn)?;
            let f = memo.client(h, s.transport, profile);
            d.set_item("tls_version", &f.tls_version)?;
            d.set_item("ja3", &f.ja3)?;
            d.set_item("ja3_hash", &f.ja3_hash)?;
            d.set_item("ja3n", &f.ja3n)?;
            d.set_item("ja3n_hash", &f.ja3n_hash)?;
            d.set_item("ja4", &f.ja4)?;
            d.set_item("ja4_r", &f.ja4_r)?;
            d.set_item("ja3_dovecot", &f.ja3_dovecot)?;
            d.set_item("ja3_dovecot_hash", &f.ja3_dovecot_hash)?;
            let hashes = PyDict::new(py);
            for (p, h) in DovecotProfile::ALL.iter().zip(&f.ja3_dovecot_hashes) {
                hashes.set_item(p.name(), h)?;
            }
            d.set_item("ja3_dovecot_hashes", hashes)?;
        }
        Hello::Server(h) => {
            d.set_item("hello", "server")?;
            d.set_item("index", s.index)?;
            d.set_item("sni", py.None())?;
            let alpn: Vec<String> =
                h.alpn.iter().filter(|a| !a.is_empty()).map(|a| ascii_backslashreplace(a)).collect();
            d.set_item("alpn", alpn)?;
            d.set_item("hello_retry_request", h.is_hello_retry_request)?;
            let f = memo.server(h);
            d.set_item("tls_version", &f.tls_version)?;
            d.set_item("ja3s", &f.ja3s)?;
            d.set_item("ja3s_hash", &f.ja3s_hash)?;
        }
    }
    Ok(d)
}

#[pymethods]
impl PcapRun {
    #[new]
    #[pyo3(signature = (
        label, dovecot_profile, json, max_flows = 200_000, idle_timeout = 300.0,
        store_sensor = None
    ))]
    fn new(
        label: String,
        dovecot_profile: &str,
        json: bool,
        max_flows: usize,
        idle_timeout: f64,
        store_sensor: Option<&str>,
    ) -> PyResult<Self> {
        let profile = DovecotProfile::from_name(dovecot_profile).ok_or_else(|| {
            PyValueError::new_err(format!("unknown OpenSSL profile {dovecot_profile:?}"))
        })?;
        Ok(PcapRun {
            label,
            stream: CaptureStream::new(),
            engine: Engine::new(max_flows, idle_timeout, profile),
            profile,
            memo: Memo::default(),
            file: None,
            json,
            store_sensor: store_sensor.map(|s| clip(s, 200)),
            error: None,
            read_error: None,
            finished: false,
        })
    }

    /// The next chunk of the capture; the hellos it completed (JSON text, or a list of dicts).
    fn feed<'py>(&mut self, py: Python<'py>, chunk: &[u8]) -> PyResult<Bound<'py, PyAny>> {
        self.step(py, Some(chunk))
    }

    /// Read the capture from this file in Rust from now on (a regular file: no copy through
    /// Python). Call `feed_file` until it returns None, then `finish`.
    fn open_file(&mut self, path: std::path::PathBuf) -> PyResult<()> {
        self.file = Some(std::fs::File::open(path)?);
        Ok(())
    }

    /// The next chunk of the file given to `open_file`: its hellos, or None at the end of it
    /// (or after damage: see `error`).
    fn feed_file<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let (more, rendered) = py.detach(|| {
            let more = self.work_file();
            (more, self.render())
        });
        let more = more?;
        let found = self.take_found(py, rendered)?;
        // At the end of the file nothing was read, so nothing was found either.
        Ok((more || self.error.is_some()).then_some(found))
    }

    /// End of input: the last hellos, and the end-of-input counters.
    fn finish<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.step(py, None)
    }

    /// The input broke off (a read error): end the engine without the end-of-input checks
    /// of the capture format; nothing more is read.
    fn abandon(&mut self, py: Python<'_>) {
        py.detach(|| {
            if !self.finished {
                self.finished = true;
                if self.stream.format() != "" {
                    self.engine.finish();
                }
            }
        });
    }

    /// None, ("not_a_capture", message) or ("damaged", offset, reason).
    #[getter]
    fn error<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        Ok(match &self.error {
            None => None,
            Some(CaptureError::NotACapture(m)) => {
                Some(("not_a_capture", m.as_str()).into_pyobject(py)?.into_any())
            }
            Some(CaptureError::Damaged { offset, reason }) => {
                Some(("damaged", *offset, reason.as_str()).into_pyobject(py)?.into_any())
            }
        })
    }

    /// "pcap" or "pcapng" once the file header was read, else "".
    #[getter]
    fn format(&self) -> &'static str {
        self.stream.format()
    }

    #[getter]
    fn packets_read(&self) -> u64 {
        self.stream.packets_read
    }

    #[getter]
    fn bytes_read(&self) -> u64 {
        self.stream.bytes_read()
    }

    /// The engine's counters (the reference's `engine.stats`), zero counts left out.
    fn counters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        counters_dict(py, &self.engine)
    }

    /// The flow table's counters: flows, evicted_full, expired_idle, closed.
    fn flow_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        flow_stats_dict(py, &self.engine)
    }
}

// --- live capture ----------------------------------------------------------------------------

/// Offsets in a TPACKET_V3 block (<linux/if_packet.h>): `tpacket_block_desc` starts with
/// version and offset_to_priv, then `tpacket_hdr_v1` (block_status, num_pkts,
/// offset_to_first_pkt, blk_len, ...).
const BLOCK_NUM_PKTS: usize = 12;
const BLOCK_FIRST_PKT: usize = 16;
/// `tpacket3_hdr`: tp_next_offset, tp_sec, tp_nsec, tp_snaplen, tp_len, tp_status, tp_mac.
const PKT_HDR_LEN: usize = 26;

fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(i..i + 4)?.try_into().ok()?))
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(i..i + 2)?.try_into().ok()?))
}

/// What one ring block held: packets, their wire bytes, how many were cut at the snap length,
/// and whether the block's layout was broken (the rest of it is then skipped).
#[derive(Default)]
struct BlockCounts {
    packets: u64,
    wire_bytes: u64,
    truncated: u64,
    malformed: bool,
}

/// Feed every packet of one TPACKET_V3 block (a copy of it, taken out of the ring by the
/// caller) to the engine. The offsets come from the kernel, but are checked like wire data.
fn feed_ring_block(engine: &mut Engine, block: &[u8], linktype: u32) -> BlockCounts {
    let mut c = BlockCounts::default();
    let (Some(count), Some(first)) = (u32_at(block, BLOCK_NUM_PKTS), u32_at(block, BLOCK_FIRST_PKT))
    else {
        c.malformed = true;
        return c;
    };
    let mut offset = first as usize;
    for _ in 0..count {
        let hdr = match block.get(offset..offset + PKT_HDR_LEN) {
            Some(h) => h,
            None => {
                c.malformed = true;
                break;
            }
        };
        let (next, sec, nsec) = (u32_at(hdr, 0), u32_at(hdr, 4), u32_at(hdr, 8));
        let (snap, wire, mac) = (u32_at(hdr, 12), u32_at(hdr, 16), u16_at(hdr, 24));
        let (Some(next), Some(sec), Some(nsec), Some(snap), Some(wire), Some(mac)) =
            (next, sec, nsec, snap, wire, mac)
        else {
            c.malformed = true;
            break;
        };
        let start = offset + mac as usize;
        let Some(frame) = block.get(start..start + snap as usize) else {
            c.malformed = true;
            break;
        };
        engine.feed_frame(sec as f64 + nsec as f64 * 1e-9, linktype, frame);
        c.packets += 1;
        c.wire_bytes += wire as u64;
        if wire > snap {
            c.truncated += 1;
        }
        if next == 0 {
            break; // the last packet of the block
        }
        offset += next as usize;
    }
    c
}

/// One live capture through one engine: fed whole TPACKET_V3 ring blocks (or, on the recv
/// path, lists of packets), one call per block; the hellos come back as dicts, the same as
/// `PcapRun`'s with the label "live" and frame numbers counted from the start of the capture.
#[pyclass(module = "ja3svc._native")]
struct LiveRun {
    engine: Engine,
    profile: DovecotProfile,
    memo: Memo,
}

impl LiveRun {
    fn found<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        let found: Vec<Sighting> = self.engine.found.drain(..).collect();
        for s in &found {
            list.append(record_dict(py, s, "live", self.profile, &mut self.memo)?)?;
        }
        Ok(list)
    }
}

#[pymethods]
impl LiveRun {
    #[new]
    #[pyo3(signature = (dovecot_profile, max_flows = 200_000, idle_timeout = 300.0))]
    fn new(dovecot_profile: &str, max_flows: usize, idle_timeout: f64) -> PyResult<Self> {
        let profile = DovecotProfile::from_name(dovecot_profile).ok_or_else(|| {
            PyValueError::new_err(format!("unknown OpenSSL profile {dovecot_profile:?}"))
        })?;
        Ok(LiveRun {
            engine: Engine::new(max_flows, idle_timeout, profile),
            profile,
            memo: Memo::default(),
        })
    }

    /// Every packet of one ring block (its bytes as copied out of the ring): returns
    /// (hellos, packets, wire bytes, truncated packets, block malformed).
    fn feed_block<'py>(
        &mut self,
        py: Python<'py>,
        block: &[u8],
        linktype: u32,
    ) -> PyResult<(Bound<'py, PyList>, u64, u64, u64, bool)> {
        let engine = &mut self.engine;
        let c = py.detach(|| feed_ring_block(engine, block, linktype));
        Ok((self.found(py)?, c.packets, c.wire_bytes, c.truncated, c.malformed))
    }

    /// Packets read one at a time (the recv path): a list of (ts, linktype, frame, wire
    /// length) tuples, as `LiveSource.packets()` yields them; returns the hellos.
    fn feed_packets<'py>(
        &mut self,
        py: Python<'py>,
        packets: Vec<(f64, u32, Vec<u8>, u64)>,
    ) -> PyResult<Bound<'py, PyList>> {
        let engine = &mut self.engine;
        py.detach(|| {
            for (ts, linktype, frame, _wire) in &packets {
                engine.feed_frame(*ts, *linktype, frame);
            }
        });
        self.found(py)
    }

    /// End of capture: the hellos still waiting in the engine.
    fn finish<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let engine = &mut self.engine;
        py.detach(|| engine.finish());
        self.found(py)
    }

    /// The engine's counters (the reference's `engine.stats`), zero counts left out.
    fn counters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        counters_dict(py, &self.engine)
    }

    /// The flow table's counters (flows, evicted_full, expired_idle, closed) and its size now
    /// (active).
    fn flow_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = flow_stats_dict(py, &self.engine)?;
        d.set_item("active", self.engine.flows.len())?;
        Ok(d)
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PcapRun>()?;
    m.add_class::<LiveRun>()?;
    m.add("STORE_COLUMNS", STORE_COLUMNS.to_vec())?;
    // Whether every part of the hot path is in Rust (QUIC and DTLS included); until it is,
    // `ja3svc pcap` keeps the Python engine as its default.
    m.add(
        "COMPLETE",
        ja3svc_engine::quic::IMPLEMENTED && ja3svc_engine::dtls::IMPLEMENTED,
    )?;
    Ok(())
}
