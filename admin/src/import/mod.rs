//! `im-admin import`: an app's conversations brought in from the vendor's export
//! (`leancloud`), or its groups from this service's own export (`groups`). The rules
//! are the model's (`model::import`, `model::export`), the writes the store's
//! (`store::dynamo::import`); this module reads, reports and counts.

pub mod source;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use futures::StreamExt;
use im_shared::model::export::GroupLine;
use im_shared::model::import::{
    choose_id, judge_for_app, Conversation, GroupRule, IdChoice, ImportGroup, ImportLimits,
    Outcome, ReportLine, Tally, Verdict,
};
use im_shared::model::{ReservedIds, Secret};
use im_shared::store::dynamo::{Existing, ImportedGroup, Written};
use im_shared::store::{DynamoStore, KeyStore};
use im_sync::vendor::{RetryPolicy, Vendor};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc;

use self::source::Read1;

#[derive(Subcommand)]
pub enum ImportCommand {
    /// Bring an app's conversations in from LeanCloud's export of the `_Conversation`
    /// class: each record imported, updated, unchanged, skipped or refused (with why), in
    /// a JSON-lines report and a summary table. Safe to repeat: a second run over the
    /// same export changes nothing. Exits 1 if any record is refused.
    Leancloud {
        #[arg(long)]
        app: String,
        /// A `.jsonl` file, a JSON array, `{"results": [...]}`, or the console's `.tar.gz`
        /// (repeatable).
        #[arg(long = "file", value_name = "PATH", required_unless_present = "scan")]
        files: Vec<PathBuf>,
        /// Read the class straight from the vendor's REST scan API instead: the app's IM
        /// cloud server and its master key (`app im-cloud set`), 1,000 a page.
        #[arg(long, conflicts_with = "files")]
        scan: bool,
        /// Which conversations become groups: `attr` (`attr.type == "group"`), `named`
        /// (named, with members) or `all-with-members`. Chat rooms, system and unique
        /// conversations never do.
        #[arg(long, default_value = "attr", value_parser = ["attr", "named", "all-with-members"])]
        groups: String,
        /// Write the JSON-lines report (one line per record) here.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        /// Read and report everything; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Bring groups back from `im-admin export`'s JSON lines (docs/export.schema.json),
    /// keeping their ids and times. Exits 1 if any line is refused.
    Groups {
        #[arg(long)]
        app: String,
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        #[arg(long)]
        dry_run: bool,
    },
}

pub async fn run(store: &DynamoStore, command: ImportCommand) -> Result<()> {
    let (tally, dry_run) = match command {
        ImportCommand::Leancloud {
            app,
            files,
            scan,
            groups,
            report,
            dry_run,
        } => {
            let rule =
                GroupRule::parse(&groups).context("--groups: attr, named or all-with-members")?;
            known_app(store, &app).await?;
            let source = if scan {
                let (cloud, key) = store
                    .mirror_target(&app)
                    .await?
                    .and_then(|t| t.leancloud)
                    .with_context(|| {
                        format!("app {app} has no IM cloud settings for LeanCloud: give it its server with `app im-cloud set` first")
                    })?;
                Source::Scan {
                    app: app.clone(),
                    server: cloud.server().to_owned(),
                    key,
                }
            } else {
                Source::Files(files)
            };
            let mut run = Run::new(store, &app, report, dry_run).await?;
            run.leancloud(source, rule).await?;
            (run.finish()?, dry_run)
        }
        ImportCommand::Groups {
            app,
            file,
            report,
            dry_run,
        } => {
            known_app(store, &app).await?;
            let mut run = Run::new(store, &app, report, dry_run).await?;
            run.groups(file).await?;
            (run.finish()?, dry_run)
        }
    };
    println!("{tally}");
    if dry_run {
        println!("dry run: nothing was written");
    }
    let refused = tally.count(Outcome::Refused);
    if refused > 0 {
        bail!("{refused} record(s) refused: see the report");
    }
    Ok(())
}

async fn known_app(store: &DynamoStore, app: &str) -> Result<()> {
    im_shared::model::ids::check_id("app", app, 64).map_err(|e| anyhow::anyhow!("{e}"))?;
    if store.master_key(app).await?.is_none() {
        bail!("no app {app}");
    }
    Ok(())
}

/// Records whose writes go on at once.
const PARALLEL: usize = 16;
/// Records read before their writes start: new small groups among them go several to a
/// transaction (`import_new_pack`), the others `PARALLEL` at a time.
const BATCH: usize = 256;
/// Packs written at once. Each is a transaction of up to 100 items: a few at a time keep
/// the table busy without queueing one behind another past the SDK's operation timeout
/// (DynamoDB Local serves every request on one queue).
const PACKS_IN_FLIGHT: usize = 4;

/// A record read: reported as it is, or a conversation to write.
enum Next {
    Done(ReportLine),
    Write {
        source: String,
        c: Box<Conversation>,
        verdict: Verdict,
        choice: IdChoice,
    },
}

/// What the reader thread hands over.
enum Read {
    Record(Read1),
    /// A file (or archive) that cannot be read past some point.
    Broken(String),
}

/// Where the vendor's records come from.
#[derive(Clone)]
pub enum Source {
    Files(Vec<PathBuf>),
    /// The vendor's REST scan, with the app's master key (only ever in its header).
    Scan {
        app: String,
        server: String,
        key: Secret,
    },
}

/// Reads `source`, a bounded queue ahead of the writes.
fn reader(source: Source) -> mpsc::Receiver<Read> {
    match source {
        Source::Files(files) => file_reader(files),
        Source::Scan { app, server, key } => scanner(app, server, key),
    }
}

/// Pages through the vendor's scan, passing each page's cursor back, until it is null.
/// A call that still fails after its retries ends the scan (reported; the records
/// read so far stand, and a re-run finishes).
fn scanner(app: String, server: String, key: Secret) -> mpsc::Receiver<Read> {
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        let vendor = match Vendor::new(RetryPolicy::default()) {
            Ok(v) => v,
            Err(e) => {
                let _ = tx
                    .send(Read::Broken(format!("scan: no HTTP client: {e}")))
                    .await;
                return;
            }
        };
        let api = vendor.app(&server, &app, &key);
        let mut cursor: Option<String> = None;
        for page in 1u64.. {
            match api.scan_conversations(cursor.as_deref()).await {
                Ok((records, next)) => {
                    for (i, record) in records.into_iter().enumerate() {
                        let read = Read1 {
                            source: format!("scan:page {page}:record {}", i + 1),
                            record: Ok(record),
                        };
                        if tx.send(Read::Record(read)).await.is_err() {
                            return;
                        }
                    }
                    match next {
                        Some(c) => cursor = Some(c),
                        None => return,
                    }
                }
                Err(e) => {
                    let _ = tx
                        .send(Read::Broken(format!(
                            "scan: page {page} could not be read: {e}"
                        )))
                        .await;
                    return;
                }
            }
        }
    });
    rx
}

/// Reads `files` on a thread of its own.
fn file_reader(files: Vec<PathBuf>) -> mpsc::Receiver<Read> {
    let (tx, rx) = mpsc::channel(1024);
    std::thread::spawn(move || {
        for path in files {
            let sent = tx.clone();
            let result = source::read_path(&path, &mut |r| {
                let _ = sent.blocking_send(Read::Record(r));
            });
            if let Err(e) = result {
                let _ = tx.blocking_send(Read::Broken(e));
            }
        }
    });
    rx
}

/// One run: the report, the counts, the progress shown.
struct Run<'a> {
    store: &'a DynamoStore,
    app: &'a str,
    dry_run: bool,
    limits: ImportLimits,
    /// The app's system client and Tencent App admin, left out of every group.
    reserved: ReservedIds,
    report: Option<BufWriter<File>>,
    tally: Tally,
    progress: Progress,
}

impl<'a> Run<'a> {
    async fn new(
        store: &'a DynamoStore,
        app: &'a str,
        report: Option<PathBuf>,
        dry_run: bool,
    ) -> Result<Self> {
        let reserved = store.reserved_ids(app).await?;
        let report = report
            .map(|p| File::create(&p).with_context(|| format!("--report {}", p.display())))
            .transpose()?
            .map(BufWriter::new);
        Ok(Self {
            store,
            app,
            dry_run,
            limits: ImportLimits::default(),
            reserved,
            report,
            tally: Tally::default(),
            progress: Progress::new(),
        })
    }

    fn record(&mut self, line: ReportLine) -> Result<()> {
        self.tally.add(line.outcome);
        if let Some(w) = &mut self.report {
            serde_json::to_writer(&mut *w, &line)?;
            w.write_all(b"\n")?;
        }
        self.progress.tick(&self.tally);
        Ok(())
    }

    fn finish(mut self) -> Result<Tally> {
        if let Some(mut w) = self.report.take() {
            w.flush()?;
        }
        self.progress.done(&self.tally);
        Ok(self.tally)
    }

    async fn leancloud(&mut self, source: Source, rule: GroupRule) -> Result<()> {
        // First pass: the highest id the records want, so that the counter is raised
        // above every one before any group is written (a new id never takes one that a
        // later record keeps). Files are read twice; so is the scan.
        let mut highest = 0u64;
        let mut pass = reader(source.clone());
        while let Some(r) = pass.recv().await {
            if let Read::Record(Read1 { record: Ok(v), .. }) = r {
                if let Ok(c) = Conversation::from_json(&v) {
                    if let Verdict::Group(g) = judge_for_app(&c, rule, &self.limits, &self.reserved)
                    {
                        highest = highest.max(g.wanted_id.unwrap_or(0));
                    }
                }
            }
        }
        let floor = self
            .store
            .import_floor(self.app, highest, self.dry_run)
            .await?;
        let mut kept = HashSet::new();
        let mut seen: HashMap<String, String> = HashMap::new();
        let mut batch = Vec::with_capacity(BATCH);
        let mut records = reader(source);
        while let Some(r) = records.recv().await {
            let next = match r {
                Read::Broken(why) => Next::Done(refused(
                    why.split(": ").next().unwrap_or_default(),
                    None,
                    why.clone(),
                )),
                Read::Record(Read1 {
                    source,
                    record: Err(why),
                }) => Next::Done(refused(&source, None, why)),
                Read::Record(Read1 {
                    source,
                    record: Ok(v),
                }) => match Conversation::from_json(&v) {
                    Err(why) => Next::Done(refused(&source, None, why)),
                    Ok(c) => match seen.get(&c.object_id) {
                        Some(first) => Next::Done(refused(
                            &source,
                            Some(c.object_id.clone()),
                            format!(
                                "objectId {} appeared before, at {first}; the first is kept",
                                c.object_id
                            ),
                        )),
                        None => {
                            seen.insert(c.object_id.clone(), source.clone());
                            let verdict = judge_for_app(&c, rule, &self.limits, &self.reserved);
                            // Chosen here, in the export's order, so that the first
                            // record wanting an id keeps it whatever the writes' order.
                            let choice = match &verdict {
                                Verdict::Group(g) => choose_id(g.wanted_id, floor, &mut kept),
                                _ => IdChoice::New { taken: None },
                            };
                            Next::Write {
                                source,
                                c: Box::new(c),
                                verdict,
                                choice,
                            }
                        }
                    },
                },
            };
            batch.push(next);
            if batch.len() == BATCH {
                self.settle(&mut batch).await?;
            }
        }
        self.settle(&mut batch).await
    }

    /// Writes a batch's groups (each a different conversation: no two touch the same
    /// items), then reports them in the export's order: first the new small groups,
    /// packed; then the rest, `PARALLEL` at a time, each as `conversation` judges it.
    async fn settle(&mut self, batch: &mut Vec<Next>) -> Result<()> {
        let this = &*self;
        let packed = this.packed(batch).await?;
        let lines: Vec<Result<ReportLine>> = futures::stream::iter(batch.drain(..).zip(packed))
            .map(|(next, packed)| async move {
                if let Some(line) = packed {
                    return Ok(line);
                }
                match next {
                    Next::Done(line) => Ok(line),
                    Next::Write {
                        source,
                        c,
                        verdict,
                        choice,
                    } => this.conversation(source, *c, verdict, choice).await,
                }
            })
            .buffered(PARALLEL)
            .collect()
            .await;
        for line in lines {
            self.record(line?)?;
        }
        Ok(())
    }

    /// The fast path of a batch: the groups of conversations the app has no link item
    /// for (one BatchGetItem per 100), with ids for those that need new ones (one counter
    /// update), written several to a transaction. Each gets its line here; the others,
    /// and any whose condition failed (an id taken, a conversation linked meanwhile), get
    /// `None` and go the way of `conversation`, which reads and decides again.
    async fn packed(&self, batch: &[Next]) -> Result<Vec<Option<ReportLine>>> {
        let mut lines: Vec<Option<ReportLine>> = batch.iter().map(|_| None).collect();
        if self.dry_run {
            return Ok(lines);
        }
        let candidates: Vec<(usize, &str, &ImportGroup, IdChoice)> = batch
            .iter()
            .enumerate()
            .filter_map(|(i, next)| match next {
                Next::Write {
                    source,
                    verdict: Verdict::Group(g),
                    choice,
                    ..
                } if DynamoStore::import_fits_a_transaction(&self.plan(g, 0)) => {
                    Some((i, source.as_str(), g, *choice))
                }
                _ => None,
            })
            .collect();
        let mut unlinked = std::collections::BTreeSet::new();
        for chunk in candidates.chunks(100) {
            let ids: Vec<&str> = chunk
                .iter()
                .map(|(_, _, g, _)| g.conversation_id.as_str())
                .collect();
            unlinked.extend(self.store.import_unlinked(self.app, &ids).await?);
        }
        let fresh: Vec<_> = candidates
            .into_iter()
            .filter(|(_, _, g, _)| unlinked.contains(&g.conversation_id))
            .collect();
        let wanted = fresh
            .iter()
            .filter(|(.., choice)| matches!(choice, IdChoice::New { .. }))
            .count() as u64;
        let mut new_ids = match wanted {
            0 => None,
            n => Some(self.store.new_group_ids(n).await?),
        }
        .into_iter()
        .flatten();
        let ids: Vec<u64> = fresh
            .iter()
            .map(|(.., choice)| match choice {
                IdChoice::Keep(id) => Some(*id),
                IdChoice::New { .. } => new_ids.next(),
            })
            .collect::<Option<_>>()
            .context("the counter gave fewer ids than asked for")?;
        let plans: Vec<ImportedGroup> = fresh
            .iter()
            .zip(&ids)
            .map(|((_, _, g, _), id)| self.plan(g, *id))
            .collect();
        let packs: Vec<Vec<Written>> = futures::stream::iter(DynamoStore::import_packs(&plans))
            .map(|pack| self.store.import_new_pack(&plans[pack]))
            .buffered(PACKS_IN_FLIGHT)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        let written = packs.into_iter().flatten();
        for (((i, source, g, choice), id), written) in fresh.into_iter().zip(ids).zip(written) {
            if written != Written::Imported {
                continue;
            }
            let mut notes = g.notes.clone();
            if let IdChoice::New { taken: Some(taken) } = choice {
                notes.push(taken_note(taken));
            }
            lines[i] = Some(ReportLine {
                source: source.to_owned(),
                conversation_id: Some(g.conversation_id.clone()),
                outcome: Outcome::Imported,
                why: None,
                group_id: Some(id),
                notes,
            });
        }
        Ok(lines)
    }

    /// The group a record makes, with `group_id`.
    fn plan<'g>(&'g self, g: &'g ImportGroup, group_id: u64) -> ImportedGroup<'g> {
        ImportedGroup {
            app_id: self.app,
            group_id,
            name: &g.name,
            owner: &g.owner,
            admins: &[],
            members: &g.members,
            max_members: g.max_members,
            avatar_url: None,
            description: None,
            conversation_id: Some(&g.conversation_id),
            created_at: g.created_at.as_deref(),
            updated_at: None,
        }
    }

    async fn conversation(
        &self,
        source: String,
        c: Conversation,
        verdict: Verdict,
        choice: IdChoice,
    ) -> Result<ReportLine> {
        let mut line = ReportLine {
            source,
            conversation_id: Some(c.object_id.clone()),
            outcome: Outcome::Skipped,
            why: None,
            group_id: None,
            notes: Vec::new(),
        };
        let g: ImportGroup = match verdict {
            Verdict::Skip(why) => {
                line.why = Some(why.to_string());
                return Ok(line);
            }
            Verdict::Refuse(why) => {
                line.outcome = Outcome::Refused;
                line.why = Some(why);
                return Ok(line);
            }
            Verdict::Group(g) => g,
        };
        line.notes = g.notes.clone();
        let existing = self
            .store
            .import_existing(self.app, &g.conversation_id)
            .await?;
        let plan = |group_id| self.plan(&g, group_id);
        match existing {
            Existing::Busy(id) => {
                line.outcome = Outcome::Refused;
                line.why = Some(format!(
                    "group {id}, which is being deleted, still holds the conversation"
                ));
            }
            Existing::Unfinished(id) => {
                line.group_id = Some(id);
                line.outcome = Outcome::Imported;
                line.notes
                    .push("finished an import that had stopped".into());
                if !self.dry_run {
                    self.store.import_finish(&plan(id)).await?;
                }
            }
            Existing::Live(meta) => {
                line.group_id = Some(meta.group_id);
                let mut p = plan(meta.group_id);
                p.max_members = meta.max_members.max(g.members.len() as u64);
                line.outcome = if self.dry_run {
                    let same = meta.group_name == g.name
                        && self.store.group_members(meta.group_id).await? == g.members.ids();
                    if same {
                        Outcome::Unchanged
                    } else {
                        Outcome::Updated
                    }
                } else {
                    let (written, notes) = self.store.import_update(&p).await?;
                    line.notes.extend(notes);
                    if written == Written::Unchanged {
                        Outcome::Unchanged
                    } else {
                        Outcome::Updated
                    }
                };
            }
            Existing::Nothing => {
                if let IdChoice::New { taken: Some(id) } = choice {
                    line.notes.push(taken_note(id));
                }
                line.outcome = Outcome::Imported;
                if self.dry_run {
                    if let IdChoice::Keep(id) = choice {
                        line.group_id = Some(id);
                    }
                    return Ok(line);
                }
                let mut id = match choice {
                    IdChoice::Keep(id) => id,
                    IdChoice::New { .. } => self.store.new_group_id().await?,
                };
                loop {
                    match self.store.import_new(&plan(id)).await? {
                        Written::IdTaken => {
                            line.notes.push(format!("group id {id} is taken: a new id"));
                            id = self.store.new_group_id().await?;
                        }
                        Written::ConversationTaken => {
                            line.outcome = Outcome::Refused;
                            line.why = Some(
                                "another group, or another import, holds the conversation".into(),
                            );
                            return Ok(line);
                        }
                        _ => break,
                    }
                }
                line.group_id = Some(id);
            }
        }
        Ok(line)
    }

    async fn groups(&mut self, file: PathBuf) -> Result<()> {
        let text = File::open(&file).with_context(|| format!("--file {}", file.display()))?;
        let label = file.display().to_string();
        // Lines are read one at a time; the counter first needs the highest id, so the
        // file is read twice.
        let mut highest = 0;
        for l in std::io::BufRead::lines(std::io::BufReader::new(&text)) {
            let Ok(l) = l else { break };
            if let Ok(g) = serde_json::from_str::<GroupLine>(&l) {
                highest = highest.max(g.group_id);
            }
        }
        let floor = self
            .store
            .import_floor(self.app, highest, self.dry_run)
            .await?;
        let text = File::open(&file)?;
        for (n, l) in std::io::BufRead::lines(std::io::BufReader::new(text)).enumerate() {
            let source = format!("{label}:{}", n + 1);
            let line = match l {
                Err(e) => refused(&source, None, format!("cannot be read: {e}")),
                Ok(l) if l.trim().is_empty() => continue,
                Ok(l) => match serde_json::from_str::<GroupLine>(&l) {
                    Err(e) => refused(&source, None, format!("not a line of the export: {e}")),
                    Ok(g) => match g.check(&self.limits).and_then(|checked| {
                        // A group of ours never has them; a line that does is not ours.
                        let ids = checked.members.ids().iter().map(String::as_str);
                        let owner = [checked.line.owner.as_str()];
                        self.reserved.check_members(ids.chain(owner))?;
                        Ok(checked)
                    }) {
                        Err(e) => refused(&source, None, e.to_string()),
                        Ok(checked) => self.group_line(source, checked, floor).await?,
                    },
                },
            };
            self.record(line)?;
        }
        Ok(())
    }

    async fn group_line(
        &mut self,
        source: String,
        checked: im_shared::model::export::CheckedLine,
        floor: u64,
    ) -> Result<ReportLine> {
        let g = &checked.line;
        let mut line = ReportLine {
            source,
            conversation_id: g.leancloud().map(str::to_owned),
            outcome: Outcome::Imported,
            why: None,
            group_id: Some(g.group_id),
            notes: Vec::new(),
        };
        let plan = ImportedGroup {
            app_id: self.app,
            group_id: g.group_id,
            name: &g.name,
            owner: &g.owner,
            admins: checked.admins.ids(),
            members: &checked.members,
            max_members: g.max_members,
            avatar_url: g.avatar_url.as_deref(),
            description: g.description.as_deref(),
            conversation_id: g.leancloud(),
            created_at: Some(&g.created_at),
            updated_at: Some(&g.updated_at),
        };
        match self.store.existing_group(self.app, g.group_id).await? {
            Existing::Busy(_) => {
                line.outcome = Outcome::Refused;
                line.why = Some(format!("group id {} is another group's", g.group_id));
            }
            Existing::Unfinished(_) => {
                line.notes
                    .push("finished an import that had stopped".into());
                if !self.dry_run {
                    self.store.import_finish(&plan).await?;
                }
            }
            Existing::Live(meta) => {
                let members = self.store.group_members(meta.group_id).await?;
                let same = meta.group_name == g.name && members == checked.members.ids();
                line.outcome = if same {
                    Outcome::Unchanged
                } else {
                    Outcome::Updated
                };
                if !same && !self.dry_run {
                    let (written, notes) = self.store.import_update(&plan).await?;
                    line.notes.extend(notes);
                    if written == Written::Unchanged {
                        line.outcome = Outcome::Unchanged;
                    }
                }
            }
            Existing::Nothing if g.group_id <= floor => {
                line.outcome = Outcome::Refused;
                line.why = Some(format!(
                    "group id {} may have been issued before (the counter was at {floor}): ids are never reused",
                    g.group_id
                ));
            }
            Existing::Nothing => {
                if !self.dry_run {
                    match self.store.import_new(&plan).await? {
                        Written::IdTaken => {
                            line.outcome = Outcome::Refused;
                            line.why = Some(format!("group id {} is another group's", g.group_id));
                        }
                        Written::ConversationTaken => {
                            line.outcome = Outcome::Refused;
                            line.why = Some("another group holds the conversation".into());
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(line)
    }
}

fn taken_note(id: u64) -> String {
    format!("attr.group_id {id} is or may have been another group's: a new id")
}

fn refused(source: &str, conversation_id: Option<String>, why: String) -> ReportLine {
    ReportLine {
        source: source.to_owned(),
        conversation_id,
        outcome: Outcome::Refused,
        why: Some(why),
        group_id: None,
        notes: Vec::new(),
    }
}

/// Progress: a bar on a terminal, a plain line every 10,000 records otherwise.
struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {pos} records, {per_sec} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar
        });
        Self { bar }
    }

    fn tick(&self, tally: &Tally) {
        let n = tally.total();
        match &self.bar {
            Some(bar) => {
                bar.set_position(n);
                bar.set_message(format!("({} refused)", tally.count(Outcome::Refused)));
            }
            None if n.is_multiple_of(10_000) => eprintln!("im-admin import: {n} records"),
            None => {}
        }
    }

    fn done(&self, tally: &Tally) {
        match &self.bar {
            Some(bar) => bar.finish_and_clear(),
            None => eprintln!("im-admin import: {} records, done", tally.total()),
        }
    }
}
