//! The jq sandbox behind [`Transform`](super::Transform) and
//! [`Filter`](super::Filter): jq filters compiled with jaq, run on a thread
//! of their own under a meter. The sandbox's rules and limits are
//! described on [`JqLimits`].

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ghostflow::NodeError;
use ghostflow::document::DurationText;
use jaq_core::box_iter::box_once;
use jaq_core::data::HasLut;
use jaq_core::load::lex::{StrPart, Tok, Token};
use jaq_core::load::parse::{BinaryOp, Def, Pattern, Term};
use jaq_core::load::{self, Arena, File, Lexer, Loader, Parser};
use jaq_core::native::{Fun, v};
use jaq_core::path::{Part, Path};
use jaq_core::{Bind, Ctx, DataT, Exn, Native, ValT as _, ValXs, Vars, ops};

/// The type of a native builtin's run function.
type RunPtr = jaq_core::RunPtr<Sandbox>;
use jaq_json::{Num, Val};
use jaq_std::ValT as _;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

// ------------------------------------------------------------------ limits

/// Bounds for one run of a jq filter, and the sandbox such runs happen in.
///
/// # What the sandbox removes
///
/// Every builtin that reads the host or has an effect is left out, so a
/// filter that names one fails to load: `env` and `$ENV` (the environment),
/// `input` and `inputs` (further inputs), `debug` and `stderr` (the host's
/// standard error), `halt` and `halt_error` (the host process),
/// `localtime`, `strflocaltime` (the host's time zone), `tobytes` (byte
/// strings are not JSON), and modules (`include`, `import`: files). `now`
/// stays: it reads the clock, which changes nothing.
///
/// # How runs are bounded
///
/// jaq looks up the program's table once for every filter term it
/// evaluates; the sandbox's data type answers that look-up through a meter.
/// The meter counts the steps (each term evaluated, each number `range`
/// yields, each item `[...]` collects, each value `..` visits), checks the
/// depth of the evaluation's stack on every step, and the deadline and the
/// execution's cancellation every 256 steps. When a limit is reached the
/// evaluation is unwound (with [`std::panic::resume_unwind`], which runs no
/// panic hook, caught where the evaluation starts), so `repeat(1)`,
/// `[range(1e12)]`, `last(range(1e18))` and `def f: 1 + f; f` all stop
/// with an error naming the limit.
///
/// The filter is rewritten before it is compiled so that what builds values
/// checks them: the results of `+` and `+=` (checked after jaq's own `+`,
/// which extends lists and strings in place), `*` and `*=` (checked before:
/// `"x" * 1e12`), `[...]`, string interpolation (and so `tostring`, `@text`,
/// ...) and `tojson` refuse a string over `max_bytes` bytes, or a list or
/// object with more than `max_bytes / 2` entries. What goes into a list, an
/// object or an update, and what `key_values`, `path_value` and `group_by`
/// give, may nest at most 10 000 levels deep (depths are remembered per
/// allocation, so checking costs a look-up, not a walk). Outputs are
/// counted (`max_outputs`) and converted to JSON within `max_bytes` and 128
/// levels of nesting.
///
/// # What cannot be bounded
///
/// - A value whose parts are shared can be much larger than the memory it
///   takes: `reduce range(40) as $i (0; [., .])` makes 2^40 leaves out of
///   40 small lists. Walking it step by step is metered (`..`, `.[]`, the
///   output, `tojson`), but jaq compares (`==`, `sort`, `unique`,
///   `group_by`), hashes (as an object key) and prints (in an error caught
///   by `try ... catch`) such a value inside one step. That step is not
///   interrupted: the node waits for it, unless the node has a `timeout`
///   policy (then the node fails when it expires, and the evaluation thread
///   runs on until jaq returns).
/// - Memory is bounded through steps and sizes, not measured: a filter may
///   hold up to `max_steps` values of up to `max_bytes` each.
/// - In a program built with `panic = "abort"` a run cannot be unwound: the
///   limits are then checked between outputs only, and the node gives up
///   waiting at its deadline while the thread runs on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(description = "Bounds for one run of a jq filter.")]
pub struct JqLimits {
    /// Time for the whole run, such as `10s` or `500ms`.
    #[serde(default = "default_timeout")]
    pub timeout: DurationText,
    /// The most evaluation steps (filter terms evaluated, numbers `range`
    /// yields, items `[...]` collects, values `..` visits) of the run; a
    /// node with many items shares one budget among them.
    #[serde(default = "default_max_steps")]
    pub max_steps: u64,
    /// The most outputs collected (with `output: all`).
    #[serde(default = "default_max_outputs")]
    pub max_outputs: usize,
    /// The largest string the filter may build, in bytes, and the largest
    /// output as JSON text; lists and objects may have up to half as many
    /// entries.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
}

impl Default for JqLimits {
    fn default() -> Self {
        JqLimits {
            timeout: default_timeout(),
            max_steps: default_max_steps(),
            max_outputs: default_max_outputs(),
            max_bytes: default_max_bytes(),
        }
    }
}

fn default_timeout() -> DurationText {
    DurationText(Duration::from_secs(10))
}

fn default_max_steps() -> u64 {
    100_000_000
}

fn default_max_outputs() -> usize {
    100_000
}

fn default_max_bytes() -> usize {
    16 * 1024 * 1024
}

/// The deepest nesting of an output (as deep as `serde_json` reads back).
const MAX_DEPTH: usize = 128;
/// The longest filter accepted, in bytes.
const MAX_SOURCE: usize = 100_000;
/// The most tokens in a filter (jaq's parser and compiler recurse on long
/// chains of operators).
const MAX_TOKENS: usize = 10_000;
/// The deepest bracket nesting in a filter's text.
const MAX_SOURCE_NESTING: usize = 256;
/// The deepest nesting of a value a filter builds.
const MAX_VALUE_DEPTH: u32 = 10_000;
/// The stack of the threads that compile and run filters.
const STACK_SIZE: usize = 128 * 1024 * 1024;
/// How deep a run may go into that stack before it is stopped; the rest is
/// left for dropping what the run built (recursively, as values nest).
const MAX_STACK_USE: usize = 48 * 1024 * 1024;
/// Error messages quote at most this many bytes of a value.
const QUOTE: usize = 300;

// -------------------------------------------------------------- the sandbox

/// The data jaq runs on: JSON values, and a meter looked up on every step.
pub(crate) struct Sandbox;

impl DataT for Sandbox {
    type V<'a> = Val;
    type Data<'a> = Meter<'a>;
}

type Lut = jaq_core::Lut<Sandbox>;
type Compiled = jaq_core::Filter<Sandbox>;

/// What every step of a run sees: the program, and the run's meter.
#[derive(Clone, Copy)]
pub(crate) struct Meter<'a> {
    lut: &'a Lut,
    state: &'a MeterState,
}

impl<'a> HasLut<'a, Sandbox> for Meter<'a> {
    fn lut(&self) -> &'a Lut {
        self.state.tick();
        self.lut
    }
}

/// Why a run was stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Steps,
    Time,
    Depth,
    Cancelled,
}

/// The payload a stopped run unwinds with.
struct Interrupted;

/// The counters and bounds of one run.
struct MeterState {
    steps: Cell<u64>,
    max_steps: u64,
    deadline: Instant,
    cancel: Arc<AtomicBool>,
    /// An address near the bottom of the run's stack.
    stack_base: usize,
    max_bytes: usize,
    max_items: usize,
    stopped: Cell<Option<Stop>>,
    depths: Depths,
}

impl MeterState {
    fn new(limits: &JqLimits, cancel: Arc<AtomicBool>, stack_base: usize) -> Self {
        MeterState {
            steps: Cell::new(0),
            max_steps: limits.max_steps,
            deadline: Instant::now() + limits.timeout.0,
            cancel,
            stack_base,
            max_bytes: limits.max_bytes,
            max_items: limits.max_bytes / 2,
            stopped: Cell::new(None),
            depths: Depths::default(),
        }
    }

    /// Counts one step; stops the run at a limit.
    #[inline]
    fn tick(&self) {
        let n = self.steps.get() + 1;
        self.steps.set(n);
        if n > self.max_steps {
            self.stop(Stop::Steps);
        }
        if n.is_multiple_of(256) {
            self.check_clock();
        }
        if self.stack_base.abs_diff(stack_address()) > MAX_STACK_USE {
            self.stop(Stop::Depth);
        }
    }

    #[cold]
    fn check_clock(&self) {
        if self.cancel.load(Ordering::Relaxed) {
            self.stop(Stop::Cancelled);
        }
        if Instant::now() >= self.deadline {
            self.stop(Stop::Time);
        }
    }

    /// Records why the run stops and unwinds it to where it started.
    #[cold]
    fn stop(&self, why: Stop) {
        if self.stopped.get().is_none() {
            self.stopped.set(Some(why));
        }
        #[cfg(panic = "unwind")]
        if !std::thread::panicking() {
            std::panic::resume_unwind(Box::new(Interrupted));
        }
    }
}

/// An address in the current stack frame.
#[inline(always)]
fn stack_address() -> usize {
    let marker = 0u8;
    std::hint::black_box(std::ptr::addr_of!(marker)) as usize
}

/// The nesting depth of the lists and objects a run has measured, by the
/// address of their allocation.
///
/// Each entry holds a weak reference, so the allocation (and its address)
/// outlives the entry's use, and the value cannot change under it: with a
/// weak reference alive, `Rc::make_mut` moves a value it changes to a new
/// allocation instead of changing it in place.
/// Depths by allocation address, with a weak reference to the allocation.
type DepthMap<T> = HashMap<usize, (Weak<T>, u32)>;

#[derive(Default)]
struct Depths {
    lists: RefCell<DepthMap<Vec<Val>>>,
    objects: RefCell<DepthMap<jaq_json::Map>>,
    /// The number of entries after the last sweep of dead ones.
    kept: Cell<usize>,
}

impl MeterState {
    /// The nesting depth of `value` (0 for a scalar, 1 for `[]`), or `None`
    /// when it is deeper than `left`. One step per list or object measured.
    fn depth(&self, value: &Val, left: u32) -> Option<u32> {
        match value {
            Val::Arr(list) => {
                let key = Rc::as_ptr(list) as usize;
                if let Some((_, d)) = self.depths.lists.borrow().get(&key) {
                    return (*d <= left).then_some(*d);
                }
                let d = self.measure(list.iter(), left)?;
                self.depths
                    .lists
                    .borrow_mut()
                    .insert(key, (Rc::downgrade(list), d));
                self.sweep();
                Some(d)
            }
            Val::Obj(map) => {
                let key = Rc::as_ptr(map) as usize;
                if let Some((_, d)) = self.depths.objects.borrow().get(&key) {
                    return (*d <= left).then_some(*d);
                }
                let d = self.measure(map.iter().flat_map(|(k, v)| [k, v]), left)?;
                self.depths
                    .objects
                    .borrow_mut()
                    .insert(key, (Rc::downgrade(map), d));
                self.sweep();
                Some(d)
            }
            _ => Some(0),
        }
    }

    /// 1 + the deepest of `children`, within `left`.
    fn measure<'v>(&self, children: impl Iterator<Item = &'v Val>, left: u32) -> Option<u32> {
        let below = left.checked_sub(1)?;
        self.tick();
        let mut deepest = 0;
        for child in children {
            deepest = deepest.max(self.depth(child, below)?);
        }
        Some(deepest + 1)
    }

    /// Records the depth of a list just built.
    fn remember(&self, value: &Val, depth: u32) {
        if let Val::Arr(list) = value {
            self.depths
                .lists
                .borrow_mut()
                .insert(Rc::as_ptr(list) as usize, (Rc::downgrade(list), depth));
            self.sweep();
        }
    }

    /// Drops the entries of values that are gone, once they have doubled.
    fn sweep(&self) {
        let lists = &mut *self.depths.lists.borrow_mut();
        let objects = &mut *self.depths.objects.borrow_mut();
        if lists.len() + objects.len() > 2 * self.depths.kept.get().max(4096) {
            lists.retain(|_, (weak, _)| weak.strong_count() > 0);
            objects.retain(|_, (weak, _)| weak.strong_count() > 0);
            self.depths.kept.set(lists.len() + objects.len());
        }
    }

    /// Refuses a value that may not be nested one level further.
    fn nestable(&self, value: &Val) -> Result<u32, String> {
        self.depth(value, MAX_VALUE_DEPTH - 1)
            .ok_or_else(|| format!("a value would nest more than {MAX_VALUE_DEPTH} levels deep"))
    }
}

// ------------------------------------------------------------ the program

/// A jq filter, parsed, checked and compiled for the sandbox.
pub(crate) struct Program {
    filter: Compiled,
    /// The variables the filter reads and does not bind itself, without
    /// `$`, sorted: their values are given to each run, in this order.
    globals: Vec<String>,
}

// Configs holding a program are shared by the engine's tasks.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Program>();
};

impl fmt::Debug for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Program").finish_non_exhaustive()
    }
}

/// The name the user's filter is compiled under (a definition after the
/// library's, so that it can call all of them).
const MAIN: &str = "__ghostflow_main";
/// Names of the sandbox's own builtins; a filter cannot write them.
const COLLECT: &str = "ghostflow collect";
const FLAT: &str = "ghostflow flat";
const MUL: &str = "ghostflow mul";
const SIZED: &str = "ghostflow sized";
const NEST: &str = "ghostflow nest";
/// The variable `l += r` binds the value of `r` to.
const OPERAND: &str = "$ghostflow operand";

/// Builtins left out, and why.
const REMOVED: &[(&str, &str)] = &[
    ("env", "it reads the host's environment"),
    ("$ENV", "it reads the host's environment"),
    ("input", "it reads further inputs; the filter has one"),
    ("inputs", "it reads further inputs; the filter has one"),
    ("debug", "it writes to the host's standard error"),
    ("stderr", "it writes to the host's standard error"),
    ("halt", "it stops the host process"),
    ("halt_error", "it stops the host process"),
    (
        "localtime",
        "it reads the host's time zone; use `gmtime` or the datetime nodes",
    ),
    (
        "strflocaltime",
        "it reads the host's time zone; use `strftime` (UTC) or the datetime nodes",
    ),
    ("tobytes", "byte strings are not JSON"),
    ("input_filename", "there is no input file"),
    ("$__loc__", "there is no source file"),
    ("get_search_list", "modules are not available"),
];

/// Native builtins of the libraries the sandbox leaves out or replaces.
const DROPPED_NATIVES: &[(&str, usize)] = &[
    ("env", 0),
    ("halt", 1),
    ("debug_empty", 0),
    ("stderr_empty", 0),
    ("localtime", 0),
    ("strflocaltime", 1),
    ("tobytes", 0),
    ("range", 3),
    ("tojson", 0),
    ("fromjson", 0),
];

/// Library definitions the sandbox leaves out.
const DROPPED_DEFS: &[&str] = &["debug", "stderr", "halt", "halt_error"];

impl Program {
    /// Parses and compiles `source`. The variables it reads without binding
    /// them are [`Program::globals`], given to each run.
    ///
    /// # Errors
    /// What jaq reports (a syntax error, an unknown filter), with its line
    /// and column, or a refused builtin.
    pub(crate) fn compile(source: &str) -> Result<Program, String> {
        if source.len() > MAX_SOURCE {
            return Err(format!(
                "the filter is longer than {MAX_SOURCE} bytes ({} bytes)",
                source.len()
            ));
        }
        if source.trim().is_empty() {
            return Err("the filter is empty; `.` outputs the input unchanged".into());
        }
        check_nesting(source)?;
        // jaq's parser and compiler recurse; give them a stack of their own.
        let outcome = std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("ghostflow-jq-compile".into())
                .stack_size(STACK_SIZE)
                .spawn_scoped(scope, || {
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| compile_here(source)))
                })
                .map(|handle| handle.join())
        });
        match outcome {
            Ok(Ok(Ok(result))) => result,
            Ok(_) => Err("jaq failed while compiling the filter".into()),
            Err(e) => Err(format!("cannot start a thread to compile the filter: {e}")),
        }
    }
}

/// Refuses text that nests brackets deeper than the parser should recurse.
fn check_nesting(source: &str) -> Result<(), String> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for c in source.chars() {
        if in_string {
            match (escaped, c) {
                (true, '(') => {
                    escaped = false;
                    in_string = false;
                    depth += 1;
                }
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth > MAX_SOURCE_NESTING {
            return Err(format!(
                "the filter nests brackets more than {MAX_SOURCE_NESTING} levels deep"
            ));
        }
    }
    Ok(())
}

impl Program {
    /// The variables the filter reads without binding them (without `$`).
    pub(crate) fn globals(&self) -> &[String] {
        &self.globals
    }
}

fn compile_here(source: &str) -> Result<Program, String> {
    let tokens = Lexer::new(source).lex().map_err(|errors| {
        let (expected, found) = &errors[0];
        let message = match (expected, found.chars().next()) {
            (load::lex::Expect::Token, Some(c)) => format!("unexpected `{c}`"),
            _ => format!("expected {}", expected.as_str()),
        };
        at(source, found, &message)
    })?;
    let count = count_tokens(&tokens);
    if count > MAX_TOKENS {
        return Err(format!(
            "the filter has more than {MAX_TOKENS} tokens ({count}); split the work over several nodes"
        ));
    }
    if let Some(Token(word, Tok::Word)) = tokens.first()
        && matches!(*word, "include" | "import" | "module")
    {
        return Err(at(
            source,
            word,
            "modules are not available in the sandbox (they read files)",
        ));
    }
    let term = Parser::new(&tokens).parse(|p| p.term()).map_err(|errors| {
        let (expected, found) = &errors[0];
        let text = Token::opt_as_str(*found, source);
        let found = if text.is_empty() {
            "the end of the filter".to_owned()
        } else {
            format!("`{text}`")
        };
        at(
            source,
            text,
            &format!("expected {}, found {found}", expected.as_str()),
        )
    })?;
    let mut free = Vec::new();
    free_vars(&term, &mut Vec::new(), &mut free);
    free.sort_unstable();
    free.dedup();
    for name in &free {
        if let Some((_, why)) = REMOVED.iter().find(|(n, _)| n == name) {
            return Err(at(
                source,
                name,
                &format!("`{name}` is not available in the sandbox: {why}"),
            ));
        }
    }
    let main = Def {
        name: MAIN,
        args: Vec::new(),
        body: rewrite(term, false),
    };
    let defs = library().iter().cloned().chain([main]);
    let arena = Arena::default();
    let modules = Loader::new(defs)
        .load(
            &arena,
            File {
                code: MAIN,
                path: (),
            },
        )
        .map_err(|_| "jaq could not load the filter".to_owned())?;
    let filter = jaq_core::Compiler::default()
        .with_funs(natives())
        .with_global_vars(free.iter().copied())
        .compile(modules)
        .map_err(|errors| {
            let mut messages = Vec::new();
            for (_, undefined) in &errors {
                for (name, what) in undefined {
                    let shown = match what {
                        jaq_core::compile::Undefined::Filter(arity) => format!("{name}/{arity}"),
                        _ => (*name).to_owned(),
                    };
                    let mut message = format!("undefined {} `{shown}`", what.as_str());
                    if let Some((_, why)) = REMOVED.iter().find(|(n, _)| n == name) {
                        message = format!("`{name}` is not available in the sandbox: {why}");
                    }
                    messages.push(at(source, name, &message));
                }
            }
            if messages.is_empty() {
                "jaq could not compile the filter".to_owned()
            } else {
                messages.join("; ")
            }
        })?;
    Ok(Program {
        filter,
        globals: free.iter().map(|name| name[1..].to_owned()).collect(),
    })
}

/// Adds to `free` the variables `term` reads that it does not bind (given
/// those `bound` around it). Where a binding's scope is unclear (keys in an
/// object pattern), it counts as bound: the compiler then reports a
/// variable that is not.
fn free_vars<'s>(term: &Term<&'s str>, bound: &mut Vec<&'s str>, free: &mut Vec<&'s str>) {
    let mut visit = |t: &Term<&'s str>, bound: &mut Vec<&'s str>| free_vars(t, bound, free);
    match term {
        Term::Var(x) if !bound.contains(x) => free.push(x),
        Term::Str(_, parts) => {
            for part in parts {
                if let StrPart::Term(t) = part {
                    visit(t, bound);
                }
            }
        }
        Term::Arr(Some(t)) | Term::Neg(t) | Term::Label(_, t) => visit(t, bound),
        Term::Obj(entries) => {
            for (k, v) in entries {
                visit(k, bound);
                if let Some(v) = v {
                    visit(v, bound);
                }
            }
        }
        Term::BinOp(l, BinaryOp::Pipe(Some(pattern)), r) => {
            visit(l, bound);
            let before = bound.len();
            pattern_vars(pattern, bound);
            pattern_keys(pattern, bound, &mut visit);
            visit(r, bound);
            bound.truncate(before);
        }
        Term::BinOp(l, _, r) => {
            visit(l, bound);
            visit(r, bound);
        }
        Term::Fold(_, xs, pattern, args) => {
            visit(xs, bound);
            if let Some(init) = args.first() {
                visit(init, bound);
            }
            let before = bound.len();
            pattern_vars(pattern, bound);
            pattern_keys(pattern, bound, &mut visit);
            for t in args.iter().skip(1) {
                visit(t, bound);
            }
            bound.truncate(before);
        }
        Term::TryCatch(t, catch) => {
            visit(t, bound);
            if let Some(c) = catch {
                visit(c, bound);
            }
        }
        Term::IfThenElse(branches, otherwise) => {
            for (cond, then) in branches {
                visit(cond, bound);
                visit(then, bound);
            }
            if let Some(t) = otherwise {
                visit(t, bound);
            }
        }
        Term::Def(defs, t) => {
            for d in defs {
                let before = bound.len();
                bound.extend(d.args.iter().filter(|a| a.starts_with('$')));
                visit(&d.body, bound);
                bound.truncate(before);
            }
            visit(t, bound);
        }
        Term::Call(_, args) => {
            for t in args {
                visit(t, bound);
            }
        }
        Term::Path(t, Path(parts)) => {
            visit(t, bound);
            for (part, _) in parts {
                match part {
                    Part::Index(i) => visit(i, bound),
                    Part::Range(from, to) => {
                        for t in from.iter().chain(to) {
                            visit(t, bound);
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

fn pattern_vars<'s>(pattern: &Pattern<&'s str>, bound: &mut Vec<&'s str>) {
    match pattern {
        Pattern::Var(x) => bound.push(x),
        Pattern::Arr(items) => items.iter().for_each(|p| pattern_vars(p, bound)),
        Pattern::Obj(entries) => entries.iter().for_each(|(_, p)| pattern_vars(p, bound)),
    }
}

fn pattern_keys<'s>(
    pattern: &Pattern<&'s str>,
    bound: &mut Vec<&'s str>,
    visit: &mut impl FnMut(&Term<&'s str>, &mut Vec<&'s str>),
) {
    match pattern {
        Pattern::Var(_) => {}
        Pattern::Arr(items) => items.iter().for_each(|p| pattern_keys(p, bound, visit)),
        Pattern::Obj(entries) => {
            for (k, p) in entries {
                visit(k, bound);
                pattern_keys(p, bound, visit);
            }
        }
    }
}

/// The number of tokens in `tokens`, with those inside brackets and
/// interpolated strings.
fn count_tokens(tokens: &[Token<&str>]) -> usize {
    tokens
        .iter()
        .map(|Token(_, tok)| {
            1 + match tok {
                Tok::Block(inner) => count_tokens(inner),
                Tok::Str(parts) => parts
                    .iter()
                    .map(|part| match part {
                        StrPart::Term(t) => count_tokens(std::slice::from_ref(t)),
                        _ => 0,
                    })
                    .sum(),
                _ => 0,
            }
        })
        .sum()
}

/// `message`, at the line and column of `part` when it lies in `source`.
fn at(source: &str, part: &str, message: &str) -> String {
    let base = source.as_ptr() as usize;
    let start = part.as_ptr() as usize;
    if start < base || start > base + source.len() {
        return message.to_owned();
    }
    let offset = start - base;
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("{message} (line {line}, column {column})")
}

/// The library definitions (jaq's core, standard and JSON definitions),
/// without those the sandbox removes, rewritten like filters are.
fn library() -> &'static [Def<&'static str>] {
    static LIBRARY: std::sync::OnceLock<Vec<Def<&'static str>>> = std::sync::OnceLock::new();
    LIBRARY.get_or_init(|| {
        jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs())
            .filter(|d| !DROPPED_DEFS.contains(&d.name))
            .map(|d| Def {
                name: d.name,
                args: d.args,
                body: rewrite(d.body, false),
            })
            .collect()
    })
}

/// The native builtins: the libraries' (without those removed or
/// replaced) and the sandbox's own.
fn natives() -> Vec<Fun<Sandbox>> {
    let ours: [Fun<Sandbox>; 8] = [
        (NEST, v(0), Native::<Sandbox>::new(nest as RunPtr)),
        (
            COLLECT,
            [Bind::Fun(())].into(),
            Native::<Sandbox>::new(collect as RunPtr),
        ),
        (FLAT, v(0), Native::<Sandbox>::new(flat as RunPtr)),
        (MUL, v(2), Native::<Sandbox>::new(mul as RunPtr)),
        (SIZED, v(0), Native::<Sandbox>::new(sized as RunPtr)),
        ("range", v(3), Native::<Sandbox>::new(range as RunPtr)),
        ("tojson", v(0), Native::<Sandbox>::new(tojson as RunPtr)),
        ("fromjson", v(0), Native::<Sandbox>::new(fromjson as RunPtr)),
    ];
    jaq_core::funs::<Sandbox>()
        .chain(jaq_std::funs::<Sandbox>())
        .chain(jaq_json::funs::<Sandbox>())
        .filter(|(name, args, _)| !DROPPED_NATIVES.contains(&(*name, args.len())))
        .chain(ours)
        .collect()
}

// ------------------------------------------------------------- rewriting

/// Rewrites a filter so that what builds values checks their size:
/// `l + r` becomes `(l + r) | flat`, `l * r` calls the sandbox's `mul`,
/// `l += r` becomes `r as $x | l |= (. + $x | flat)`, `[f]` collects through the meter, string
/// interpolation checks each part, what is put into an object, an update or
/// the results of `key_values`, `path_value` and `group_by` is checked for
/// depth, and `..` (outside the left side of an update, where jaq's own
/// order of updates is kept) becomes `recurse`.
fn rewrite(term: Term<&str>, lhs: bool) -> Term<&str> {
    rewrite_in(term, lhs)
}

fn rewrite_in<'s>(term: Term<&'s str>, lhs: bool) -> Term<&'s str> {
    let rw = |t: Term<&'s str>| rewrite_in(t, lhs);
    let bx = |t: Box<Term<&'s str>>| Box::new(rewrite_in(*t, lhs));
    match term {
        Term::Recurse if !lhs => Term::Call("recurse", Vec::new()),
        Term::Str(format, parts) => Term::Str(
            format,
            parts
                .into_iter()
                .map(|part| match part {
                    StrPart::Term(t) => StrPart::Term(Term::BinOp(
                        Box::new(rw(t)),
                        BinaryOp::Pipe(None),
                        Box::new(Term::Call(SIZED, Vec::new())),
                    )),
                    other => other,
                })
                .collect(),
        ),
        Term::Arr(Some(f)) => Term::Call(COLLECT, vec![rw(*f)]),
        Term::Obj(entries) => Term::Obj(
            entries
                .into_iter()
                .map(|(k, v)| match (k, v) {
                    // `{$x}` is `{x: $x}`.
                    (Term::Var(x), None) => (
                        Term::Str(None, vec![StrPart::Str(&x[1..])]),
                        Some(nested(Term::Var(x))),
                    ),
                    (k, v) => (nested(rw(k)), v.map(|v| nested(rw(v)))),
                })
                .collect(),
        ),
        Term::Neg(t) => Term::Neg(bx(t)),
        Term::BinOp(l, op, r) => match op {
            // jaq's own `+`, which extends its left side in place, checked
            // after: both sides are within the limits, so what it builds is
            // at most twice as large.
            BinaryOp::Math(ops::Math::Add) => {
                flat_checked(Term::BinOp(bx(l), BinaryOp::Math(ops::Math::Add), bx(r)))
            }
            BinaryOp::Math(ops::Math::Mul) => Term::Call(MUL, vec![rw(*l), rw(*r)]),
            BinaryOp::UpdateMath(m @ (ops::Math::Add | ops::Math::Mul)) => {
                let operand = Term::Var(OPERAND);
                let value = if matches!(m, ops::Math::Add) {
                    flat_checked(Term::BinOp(
                        Box::new(Term::Id),
                        BinaryOp::Math(ops::Math::Add),
                        Box::new(operand),
                    ))
                } else {
                    Term::Call(MUL, vec![Term::Id, operand])
                };
                let update = Term::BinOp(
                    Box::new(rewrite_in(*l, true)),
                    BinaryOp::Update,
                    Box::new(value),
                );
                Term::BinOp(
                    Box::new(rewrite_in(*r, false)),
                    BinaryOp::Pipe(Some(Pattern::Var(OPERAND))),
                    Box::new(update),
                )
            }
            BinaryOp::Assign | BinaryOp::Update | BinaryOp::UpdateAlt => Term::BinOp(
                Box::new(rewrite_in(*l, true)),
                op,
                Box::new(nested(rewrite_in(*r, false))),
            ),
            BinaryOp::UpdateMath(_) => Term::BinOp(
                Box::new(rewrite_in(*l, true)),
                op,
                Box::new(rewrite_in(*r, false)),
            ),
            BinaryOp::Pipe(pattern) => {
                Term::BinOp(bx(l), BinaryOp::Pipe(pattern.map(rewrite_pattern)), bx(r))
            }
            op => Term::BinOp(bx(l), op, bx(r)),
        },
        Term::Label(name, t) => Term::Label(name, bx(t)),
        Term::Fold(name, xs, pattern, args) => Term::Fold(
            name,
            bx(xs),
            rewrite_pattern(pattern),
            args.into_iter().map(rw).collect(),
        ),
        Term::TryCatch(t, catch) => Term::TryCatch(bx(t), catch.map(bx)),
        Term::IfThenElse(branches, otherwise) => Term::IfThenElse(
            branches
                .into_iter()
                .map(|(cond, then)| (rw(cond), rw(then)))
                .collect(),
            otherwise.map(bx),
        ),
        Term::Def(defs, t) => Term::Def(
            defs.into_iter()
                .map(|d| Def {
                    name: d.name,
                    args: d.args,
                    body: rewrite_in(d.body, false),
                })
                .collect(),
            bx(t),
        ),
        Term::Call(name, args) => {
            let wraps = matches!(
                (name, args.len()),
                ("key_values", 0) | ("path_value", 1) | ("group_by", 1)
            );
            let call = Term::Call(name, args.into_iter().map(rw).collect());
            if wraps { nested(call) } else { call }
        }
        Term::Path(t, Path(parts)) => Term::Path(
            bx(t),
            Path(
                parts
                    .into_iter()
                    .map(|(part, opt)| {
                        let part = match part {
                            Part::Index(i) => Part::Index(rw(i)),
                            Part::Range(from, to) => Part::Range(from.map(rw), to.map(rw)),
                        };
                        (part, opt)
                    })
                    .collect(),
            ),
        ),
        other => other,
    }
}

/// `t | flat`: `t`'s outputs, refused when longer than the limits.
fn flat_checked(t: Term<&str>) -> Term<&str> {
    Term::BinOp(
        Box::new(t),
        BinaryOp::Pipe(None),
        Box::new(Term::Call(FLAT, Vec::new())),
    )
}

/// `t | nest`: `t`'s outputs, refused when nested too deep.
fn nested(t: Term<&str>) -> Term<&str> {
    Term::BinOp(
        Box::new(t),
        BinaryOp::Pipe(None),
        Box::new(Term::Call(NEST, Vec::new())),
    )
}

fn rewrite_pattern(pattern: Pattern<&str>) -> Pattern<&str> {
    match pattern {
        Pattern::Var(x) => Pattern::Var(x),
        Pattern::Arr(items) => Pattern::Arr(items.into_iter().map(rewrite_pattern).collect()),
        Pattern::Obj(entries) => Pattern::Obj(
            entries
                .into_iter()
                .map(|(k, p)| (rewrite_in(k, false), rewrite_pattern(p)))
                .collect(),
        ),
    }
}

// ----------------------------------------------------- the sandbox's builtins

fn fail<'a>(message: String) -> ValXs<'a, Val> {
    box_once(Err(Exn::from(jaq_core::Error::str(message))))
}

/// `[f]`: collects the outputs of `f`, one step and one entry each.
fn collect<'a>(mut cv: (Ctx<'a, Sandbox>, Val)) -> ValXs<'a, Val> {
    let (f, fc) = cv.0.pop_fun();
    let meter = *fc.data();
    let mut items = Vec::new();
    let mut deepest = 0;
    for y in f.run((fc, cv.1)) {
        match y {
            Ok(item) => {
                meter.state.tick();
                match meter.state.nestable(&item) {
                    Ok(d) => deepest = deepest.max(d),
                    Err(message) => return fail(message),
                }
                if items.len() >= meter.state.max_items {
                    return fail(format!(
                        "a list would have more than {} items (limits.max_bytes / 2)",
                        meter.state.max_items
                    ));
                }
                items.push(item);
            }
            Err(e) => return box_once(Err(e)),
        }
    }
    let list: Val = items.into_iter().collect();
    meter.state.remember(&list, deepest + 1);
    box_once(Ok(list))
}

/// Passes on a value that may be nested one level further (an object's
/// key or value, what an update puts in place, what `key_values`,
/// `path_value` and `group_by` give).
fn nest<'a>(cv: (Ctx<'a, Sandbox>, Val)) -> ValXs<'a, Val> {
    match cv.0.data().state.nestable(&cv.1) {
        Ok(_) => box_once(Ok(cv.1)),
        Err(message) => fail(message),
    }
}

/// The length a string, list or object would have.
fn flat_len(value: &Val) -> Option<(usize, bool)> {
    match value {
        Val::TStr(b) | Val::BStr(b) => Some((b.len(), true)),
        Val::Arr(a) => Some((a.len(), false)),
        Val::Obj(o) => Some((o.len(), false)),
        _ => None,
    }
}

fn too_large(meter: &MeterState, bytes: bool) -> String {
    if bytes {
        format!(
            "a string would be longer than {} bytes (limits.max_bytes)",
            meter.max_bytes
        )
    } else {
        format!(
            "a list or object would have more than {} entries (limits.max_bytes / 2)",
            meter.max_items
        )
    }
}

/// jaq's error, with the values in it quoted within bounds.
fn math_error(error: &jaq_core::Error<Val>) -> Exn<'static, Val> {
    Exn::from(jaq_core::Error::str(bounded(error, QUOTE)))
}

/// Passes on a string, list or object within the limits.
fn flat<'a>(cv: (Ctx<'a, Sandbox>, Val)) -> ValXs<'a, Val> {
    let meter = cv.0.data().state;
    if let Some((len, bytes)) = flat_len(&cv.1) {
        let limit = if bytes {
            meter.max_bytes
        } else {
            meter.max_items
        };
        if len > limit {
            return fail(too_large(meter, bytes));
        }
    }
    box_once(Ok(cv.1))
}

/// `l * r`, refusing a repeated string over the limit and a merge with an
/// object larger than the limit.
fn mul<'a>(mut cv: (Ctx<'a, Sandbox>, Val)) -> ValXs<'a, Val> {
    let r = cv.0.pop_var();
    let l = cv.0.pop_var();
    let meter = cv.0.data().state;
    let repeat = |s: &Val, n: &Val| -> Option<String> {
        let (len, _) = flat_len(s)?;
        let count = match n.as_isize() {
            Some(count) if count > 0 => count.unsigned_abs(),
            Some(_) => return None,
            None if n.is_int() => usize::MAX,
            None => return None,
        };
        (len.saturating_mul(count) > meter.max_bytes).then(|| too_large(meter, true))
    };
    let refusal = match (&l, &r) {
        (Val::TStr(_) | Val::BStr(_), Val::Num(_)) => repeat(&l, &r),
        (Val::Num(_), Val::TStr(_) | Val::BStr(_)) => repeat(&r, &l),
        (Val::Obj(_), Val::Obj(_)) => json_size(&r, meter.max_bytes)
            .is_none()
            .then(|| too_large(meter, true)),
        _ => None,
    };
    if let Some(message) = refusal {
        return fail(message);
    }
    box_once((l * r).map_err(|e| math_error(&e)))
}

/// Passes its input on when its JSON text fits in `max_bytes`.
fn sized<'a>(cv: (Ctx<'a, Sandbox>, Val)) -> ValXs<'a, Val> {
    let meter = cv.0.data().state;
    if matches!(cv.1, Val::Arr(_) | Val::Obj(_)) && json_size(&cv.1, meter.max_bytes).is_none() {
        return fail(format!(
            "a value to turn into text is larger than {} bytes as JSON (limits.max_bytes)",
            meter.max_bytes
        ));
    }
    box_once(Ok(cv.1))
}

/// `range($from; $to; $by)`, one step per number.
fn range<'a>(mut cv: (Ctx<'a, Sandbox>, Val)) -> ValXs<'a, Val> {
    let by = cv.0.pop_var();
    let to = cv.0.pop_var();
    let from = cv.0.pop_var();
    let meter = *cv.0.data();
    let direction = by.partial_cmp(&Val::from(0isize));
    let mut next = Some(from);
    Box::new(std::iter::from_fn(move || {
        let current = next.take()?;
        let more = match direction {
            Some(std::cmp::Ordering::Greater) => current < to,
            Some(std::cmp::Ordering::Less) => current > to,
            _ => current != to,
        };
        if !more {
            return None;
        }
        meter.state.tick();
        match current.clone() + by.clone() {
            Ok(n) => next = Some(n),
            Err(e) => return Some(Err(math_error(&e))),
        }
        Some(Ok(current))
    }))
}

/// `tojson`, within `max_bytes`.
fn tojson<'a>(cv: (Ctx<'a, Sandbox>, Val)) -> ValXs<'a, Val> {
    let meter = cv.0.data().state;
    match to_json(&cv.1, meter.max_bytes) {
        Ok(value) => match serde_json::to_string(&value) {
            Ok(text) => box_once(Ok(Val::from(text))),
            Err(e) => fail(format!("tojson: {e}")),
        },
        Err(e) => fail(format!("tojson: {e}")),
    }
}

/// `fromjson`: one JSON value (as deep as `serde_json` reads).
fn fromjson<'a>(cv: (Ctx<'a, Sandbox>, Val)) -> ValXs<'a, Val> {
    let Some(bytes) = cv.1.as_utf8_bytes() else {
        return fail(format!(
            "fromjson: cannot parse {} as JSON, it is not a string",
            bounded(&cv.1, QUOTE)
        ));
    };
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(value) => box_once(Ok(from_json(&value))),
        Err(e) => fail(format!("fromjson: {e}")),
    }
}

// ------------------------------------------------------------ conversions

/// A JSON value as a jaq value.
pub(crate) fn from_json(value: &serde_json::Value) -> Val {
    match value {
        serde_json::Value::Null => Val::Null,
        serde_json::Value::Bool(b) => Val::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Val::Num(Num::from_integral(i))
            } else if let Some(u) = n.as_u64() {
                Val::Num(Num::from_integral(u))
            } else {
                Val::Num(Num::Float(n.as_f64().unwrap_or(f64::NAN)))
            }
        }
        serde_json::Value::String(s) => Val::from(s.clone()),
        serde_json::Value::Array(items) => items.iter().map(from_json).collect(),
        serde_json::Value::Object(map) => Val::obj(
            map.iter()
                .map(|(k, v)| (Val::from(k.clone()), from_json(v)))
                .collect(),
        ),
    }
}

/// Why a jaq value has no JSON form here.
#[derive(Debug)]
pub(crate) enum ConvertError {
    /// Larger than the byte budget.
    TooLarge(usize),
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// An object key that is not a string.
    Key(String),
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConvertError::TooLarge(limit) => {
                write!(
                    f,
                    "the value is larger than {limit} bytes as JSON (limits.max_bytes)"
                )
            }
            ConvertError::TooDeep => write!(f, "the value nests more than {MAX_DEPTH} levels deep"),
            ConvertError::Key(key) => write!(f, "the object key {key} is not a string"),
        }
    }
}

/// A jaq value as JSON, within `budget` bytes of JSON text and
/// [`MAX_DEPTH`] levels. NaN becomes `null` and infinities the largest
/// finite numbers, as in jq.
pub(crate) fn to_json(value: &Val, budget: usize) -> Result<serde_json::Value, ConvertError> {
    let mut left = budget;
    convert(value, 0, &mut left, budget)
}

fn spend(left: &mut usize, bytes: usize, budget: usize) -> Result<(), ConvertError> {
    *left = left
        .checked_sub(bytes)
        .ok_or(ConvertError::TooLarge(budget))?;
    Ok(())
}

fn convert(
    value: &Val,
    depth: usize,
    left: &mut usize,
    budget: usize,
) -> Result<serde_json::Value, ConvertError> {
    if depth > MAX_DEPTH {
        return Err(ConvertError::TooDeep);
    }
    Ok(match value {
        Val::Null => {
            spend(left, 4, budget)?;
            serde_json::Value::Null
        }
        Val::Bool(b) => {
            spend(left, 5, budget)?;
            serde_json::Value::Bool(*b)
        }
        Val::Num(n) => {
            spend(left, 8, budget)?;
            serde_json::Value::Number(number(n))
        }
        Val::TStr(b) | Val::BStr(b) => {
            spend(left, b.len() + 2, budget)?;
            serde_json::Value::String(String::from_utf8_lossy(b).into_owned())
        }
        Val::Arr(items) => {
            spend(left, 2, budget)?;
            let mut out = Vec::with_capacity(items.len().min(*left));
            for item in items.iter() {
                spend(left, 1, budget)?;
                out.push(convert(item, depth + 1, left, budget)?);
            }
            serde_json::Value::Array(out)
        }
        Val::Obj(map) => {
            spend(left, 2, budget)?;
            let mut out = serde_json::Map::with_capacity(map.len().min(*left));
            for (k, v) in map.iter() {
                let key = match k {
                    Val::TStr(b) | Val::BStr(b) => String::from_utf8_lossy(b).into_owned(),
                    other => return Err(ConvertError::Key(bounded(other, QUOTE))),
                };
                spend(left, key.len() + 4, budget)?;
                let v = convert(v, depth + 1, left, budget)?;
                out.insert(key, v);
            }
            serde_json::Value::Object(out)
        }
    })
}

/// A jaq number as a JSON number.
fn number(n: &Num) -> serde_json::Number {
    let float = |f: f64| {
        let f = if f.is_nan() {
            return None;
        } else if f == f64::INFINITY {
            f64::MAX
        } else if f == f64::NEG_INFINITY {
            f64::MIN
        } else {
            f
        };
        serde_json::Number::from_f64(f)
    };
    let out = match n {
        Num::Int(i) => Some(serde_json::Number::from(*i as i64)),
        Num::BigInt(i) => {
            let text = i.to_string();
            text.parse::<i64>()
                .map(serde_json::Number::from)
                .or_else(|_| text.parse::<u64>().map(serde_json::Number::from))
                .ok()
                .or_else(|| text.parse::<f64>().ok().and_then(float))
        }
        Num::Float(f) => float(*f),
        Num::Dec(text) => text
            .parse::<serde_json::Number>()
            .ok()
            .or_else(|| text.parse::<f64>().ok().and_then(float)),
    };
    // NaN: jq writes `null`; a JSON number cannot say it.
    out.unwrap_or_else(|| serde_json::Number::from(0))
}

/// The size of `value` as JSON text, or `None` when it is over `budget`
/// (counted without recursion, stopping at the budget).
fn json_size(value: &Val, budget: usize) -> Option<usize> {
    let mut size = 0usize;
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        size += match v {
            Val::Null | Val::Bool(_) => 5,
            Val::Num(_) => 8,
            Val::TStr(b) | Val::BStr(b) => b.len() + 2,
            Val::Arr(items) => {
                stack.extend(items.iter());
                2 + items.len()
            }
            Val::Obj(map) => {
                for (k, v) in map.iter() {
                    stack.push(k);
                    stack.push(v);
                }
                2 + map.len()
            }
        };
        if size > budget || stack.len() > budget {
            return None;
        }
    }
    Some(size)
}

/// `value` displayed in at most `limit` bytes (with `…` when cut).
pub(crate) fn bounded(value: &dyn fmt::Display, limit: usize) -> String {
    struct Bounded {
        text: String,
        limit: usize,
        cut: bool,
    }
    impl fmt::Write for Bounded {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let room = self.limit.saturating_sub(self.text.len());
            if s.len() <= room {
                self.text.push_str(s);
                return Ok(());
            }
            let mut end = room;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            self.text.push_str(&s[..end]);
            self.cut = true;
            Err(fmt::Error)
        }
    }
    let mut out = Bounded {
        text: String::new(),
        limit,
        cut: false,
    };
    let _ = write!(out, "{value}");
    if out.cut {
        out.text.push('…');
    }
    out.text
}

// ------------------------------------------------------------------ runs

/// What to take from a filter's outputs for each input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Take {
    /// The first output, converted; none when there is none.
    First,
    /// All outputs, converted.
    All,
    /// Whether the first output is truthy (neither `false` nor `null`).
    Truthy,
}

/// What one input gave.
#[derive(Debug)]
pub(crate) enum Taken {
    /// The converted outputs (at most one for [`Take::First`]).
    Values(Vec<serde_json::Value>),
    /// For [`Take::Truthy`].
    Truthy(bool),
}

/// Why a run failed.
#[derive(Debug)]
pub(crate) enum RunError {
    /// jaq reported an error for the input at this index.
    Jq {
        /// Which input (0 for a node with one).
        index: usize,
        /// jaq's message.
        message: String,
    },
    /// An output could not be converted to JSON.
    Output {
        /// Which input.
        index: usize,
        /// Why.
        error: ConvertError,
    },
    /// More outputs than allowed.
    TooManyOutputs(usize),
    /// A limit stopped the run.
    Stopped(String),
    /// The run could not start, or jaq failed.
    Internal(String),
}

impl Program {
    /// Runs the filter on each of `inputs` on a thread of its own, with
    /// `globals` (in the order of [`Program::globals`]); gives back what
    /// each input gave, and the inputs.
    pub(crate) async fn run(
        self: &Arc<Self>,
        inputs: Vec<serde_json::Value>,
        globals: Vec<serde_json::Value>,
        take: Take,
        limits: &JqLimits,
    ) -> Result<(Vec<Taken>, Vec<serde_json::Value>), RunError> {
        let cancel = Arc::new(AtomicBool::new(false));
        // A dropped future (cancellation, the node's timeout) stops the run.
        struct CancelOnDrop(Arc<AtomicBool>);
        impl Drop for CancelOnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _guard = CancelOnDrop(cancel.clone());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let program = self.clone();
        let limits_for_thread = limits.clone();
        std::thread::Builder::new()
            .name("ghostflow-jq".into())
            .stack_size(STACK_SIZE)
            .spawn(move || {
                let result = program.run_here(inputs, &globals, take, &limits_for_thread, cancel);
                let _ = tx.send(result);
            })
            .map_err(|e| {
                RunError::Internal(format!("cannot start a thread for the filter: {e}"))
            })?;
        #[cfg(panic = "unwind")]
        let received = rx.await;
        #[cfg(not(panic = "unwind"))]
        let received = match tokio::time::timeout(limits.timeout.0, rx).await {
            Ok(received) => received,
            Err(_) => return Err(RunError::Stopped(stop_message(Stop::Time, limits))),
        };
        received.unwrap_or_else(|_| {
            Err(RunError::Internal(
                "the filter's thread ended without an answer".into(),
            ))
        })
    }

    /// Runs the filter on this thread.
    fn run_here(
        &self,
        inputs: Vec<serde_json::Value>,
        globals: &[serde_json::Value],
        take: Take,
        limits: &JqLimits,
        cancel: Arc<AtomicBool>,
    ) -> Result<(Vec<Taken>, Vec<serde_json::Value>), RunError> {
        let state = MeterState::new(limits, cancel, stack_address());
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.evaluate(&inputs, globals, take, limits, &state)
        }));
        match (outcome, state.stopped.get()) {
            (_, Some(why)) => Err(RunError::Stopped(stop_message(why, limits))),
            (Ok(result), None) => result.map(|taken| (taken, inputs)),
            (Err(payload), None) => Err(RunError::Internal(if payload.is::<Interrupted>() {
                "the filter was interrupted".to_owned()
            } else {
                "jaq failed while running the filter".to_owned()
            })),
        }
    }

    fn evaluate(
        &self,
        inputs: &[serde_json::Value],
        globals: &[serde_json::Value],
        take: Take,
        limits: &JqLimits,
        state: &MeterState,
    ) -> Result<Vec<Taken>, RunError> {
        let meter = Meter {
            lut: &self.filter.lut,
            state,
        };
        let vars = Vars::new(globals.iter().map(from_json));
        let mut results = Vec::with_capacity(inputs.len());
        let mut total = 0usize;
        for (index, input) in inputs.iter().enumerate() {
            let ctx = Ctx::<Sandbox>::new(meter, vars.clone());
            let input = from_json(input);
            let mut outputs = self.filter.id.run((ctx, input));
            let jq_error = |e: Exn<'_, Val>| RunError::Jq {
                index,
                message: exception_message(e),
            };
            let taken = match take {
                Take::Truthy => match outputs.next() {
                    None => Taken::Truthy(false),
                    Some(Ok(v)) => Taken::Truthy(v.as_bool()),
                    Some(Err(e)) => return Err(jq_error(e)),
                },
                Take::First => match outputs.next() {
                    None => Taken::Values(Vec::new()),
                    Some(Ok(v)) => Taken::Values(vec![
                        to_json(&v, limits.max_bytes)
                            .map_err(|error| RunError::Output { index, error })?,
                    ]),
                    Some(Err(e)) => return Err(jq_error(e)),
                },
                Take::All => {
                    let mut values = Vec::new();
                    let mut left = limits.max_bytes;
                    for output in outputs.by_ref() {
                        check_stopped(state)?;
                        let v = output.map_err(jq_error)?;
                        total += 1;
                        if total > limits.max_outputs {
                            return Err(RunError::TooManyOutputs(limits.max_outputs));
                        }
                        let converted = to_json(&v, left)
                            .map_err(|error| match error {
                                ConvertError::TooLarge(_) => {
                                    ConvertError::TooLarge(limits.max_bytes)
                                }
                                other => other,
                            })
                            .map_err(|error| RunError::Output { index, error })?;
                        left = left.saturating_sub(json_size(&v, left).unwrap_or(left));
                        values.push(converted);
                    }
                    Taken::Values(values)
                }
            };
            drop(outputs);
            check_stopped(state)?;
            results.push(taken);
        }
        Ok(results)
    }
}

/// Between outputs: whether a limit was reached (all that can be done when
/// runs cannot be unwound).
fn check_stopped(state: &MeterState) -> Result<(), RunError> {
    match state.stopped.get() {
        Some(_) => Err(RunError::Internal("stopped".into())),
        None => Ok(()),
    }
}

fn stop_message(why: Stop, limits: &JqLimits) -> String {
    match why {
        Stop::Steps => format!(
            "the filter took more than {} steps (limits.max_steps)",
            limits.max_steps
        ),
        Stop::Time => format!(
            "the filter ran longer than {} (limits.timeout)",
            limits.timeout
        ),
        Stop::Depth => "the filter recursed too deeply".to_owned(),
        Stop::Cancelled => "the execution was cancelled".to_owned(),
    }
}

/// jaq's message for an exception, within bounds; an error raised with a
/// string (`error("...")`) is that string.
fn exception_message(e: Exn<'_, Val>) -> String {
    match e.get_err() {
        Ok(error) => {
            let text = bounded(&error, 1000);
            match serde_json::from_str::<String>(&text) {
                Ok(plain) => plain,
                Err(_) => text,
            }
        }
        Err(_) => "the filter stopped with an unexpected exception".to_owned(),
    }
}

impl RunError {
    /// The error the engine sees, naming `what` (such as `filter` or
    /// `condition`), its source and, for nodes with many inputs, the item.
    pub(crate) fn into_node_error(self, what: &str, source: &str, items: bool) -> NodeError {
        let shown = shorten(source, 80);
        let item = |index: usize| {
            if items {
                format!(" on item {index}")
            } else {
                String::new()
            }
        };
        match self {
            RunError::Jq { index, message } => {
                NodeError::permanent(format!("{what} `{shown}`{}: {message}", item(index)))
            }
            RunError::Output { index, error } => {
                NodeError::permanent(format!("{what} `{shown}`{}: output: {error}", item(index)))
            }
            RunError::TooManyOutputs(limit) => NodeError::permanent(format!(
                "{what} `{shown}`: more than {limit} outputs (limits.max_outputs)"
            )),
            RunError::Stopped(why) => NodeError::permanent(format!("{what} `{shown}`: {why}")),
            RunError::Internal(why) => NodeError::retryable(format!("{what} `{shown}`: {why}")),
        }
    }
}

/// `text` on one line, cut to about `max` characters.
fn shorten(text: &str, max: usize) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let cut: String = one_line.chars().take(max).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    async fn run(
        filter: &str,
        input: serde_json::Value,
        take: Take,
    ) -> Result<Vec<Taken>, RunError> {
        let program = Arc::new(Program::compile(filter).unwrap());
        program
            .run(vec![input], Vec::new(), take, &JqLimits::default())
            .await
            .map(|(taken, _)| taken)
    }

    fn values(taken: Vec<Taken>) -> Vec<serde_json::Value> {
        match taken.into_iter().next().unwrap() {
            Taken::Values(v) => v,
            Taken::Truthy(_) => panic!(),
        }
    }

    #[tokio::test]
    async fn runs_filters() {
        let out = values(
            run("[.[] | . * 2] | add", json!([1, 2, 3]), Take::All)
                .await
                .unwrap(),
        );
        assert_eq!(out, vec![json!(12)]);
        let out = values(
            run(".a, .b", json!({"a": 1, "b": "x"}), Take::All)
                .await
                .unwrap(),
        );
        assert_eq!(out, vec![json!(1), json!("x")]);
        let out = values(
            run(
                "\"\\(.a)-\\(.b)\" | ascii_upcase",
                json!({"a": 1, "b": "x"}),
                Take::All,
            )
            .await
            .unwrap(),
        );
        assert_eq!(out, vec![json!("1-X")]);
        let out = values(run("[paths]", json!({"a": [1]}), Take::All).await.unwrap());
        assert_eq!(out, vec![json!([["a"], ["a", 0]])]);
        let out = values(
            run(
                "walk(if type == \"number\" then . + 1 else . end)",
                json!({"a": [1, {"b": 2}]}),
                Take::All,
            )
            .await
            .unwrap(),
        );
        assert_eq!(out, vec![json!({"a": [2, {"b": 3}]})]);
        let out = values(
            run(
                ".a += 1 | .s *= {y: 2} | . as $x | {$x, y: 2}",
                json!({"a": 1, "s": {"x": 1}}),
                Take::All,
            )
            .await
            .unwrap(),
        );
        assert_eq!(
            out,
            vec![json!({"x": {"a": 2, "s": {"x": 1, "y": 2}}, "y": 2})]
        );
        let out = values(run("[..]", json!([[1]]), Take::All).await.unwrap());
        assert_eq!(out, vec![json!([[[1]], [1], 1])]);
    }

    #[tokio::test]
    async fn nesting_is_refused_wherever_values_nest() {
        for filter in [
            "reduce range(30000) as $i (0; [.]) | 1",
            "reduce range(30000) as $i (0; {a: .}) | 1",
            "reduce range(30000) as $i (0; . as $x | {$x}) | 1",
            "reduce range(30000) as $i ({}; .a = .) | 1",
            "reduce range(30000) as $i ({}; .a |= {b: .}) | 1",
            "reduce range(30000) as $i ([[0]]; group_by(.)) | 1",
            "reduce range(30000) as $i ([0]; key_values) | 1",
            "reduce range(30000) as $i (0; first(path_value(.)) ) | 1",
            "reduce range(30000) as $i (0; [.] | .[0] |= [.]) | 1",
        ] {
            match run(filter, json!(0), Take::All).await {
                Err(RunError::Jq { message, .. }) => {
                    assert!(
                        message.contains("nest more than 10000 levels"),
                        "{filter}: {message}"
                    );
                }
                other => panic!("{filter}: {other:?}"),
            }
        }
        // A long path cannot be created in one update either.
        assert!(
            run(
                "{} | setpath([range(300000) | \"a\"]; 1) | 1",
                json!(0),
                Take::All
            )
            .await
            .is_err()
        );
    }

    #[test]
    fn compile_errors_give_positions_and_long_filters_are_refused() {
        let err = Program::compile("1 +\n  )").unwrap_err();
        assert_eq!(err, "unexpected `)` (line 2, column 3)");
        let long = format!("1{}", "+1".repeat(6000));
        assert!(
            Program::compile(&long)
                .unwrap_err()
                .contains("more than 10000 tokens")
        );
        let deep = format!("{}1{}", "[".repeat(300), "]".repeat(300));
        assert!(
            Program::compile(&deep)
                .unwrap_err()
                .contains("more than 256 levels")
        );
        let program =
            Program::compile(". as [$a, {b: $c}] | reduce .[] as $x ($y; . + $x + $z) | $a")
                .unwrap();
        assert_eq!(program.globals(), ["y", "z"]);
    }
}
