//! Scheduled backups (B1, B3) and retention (B4).
//!
//! A schedule says when to back up a layer (or every layer, `*`): `every day at 02:00`,
//! `every 6 hours`, `every week on monday at 03:30 in Europe/Paris`, `every 15 minutes`. Times
//! are wall-clock times in the schedule's zone (UTC unless `in <zone>` names one), computed
//! with jiff, so `at 02:30` on a night the clocks skip 02:00 to 03:00 runs at 03:30, and on a
//! night they fall back it runs once, at the first 02:30.
//!
//! Schedules live in `__korm_backups__` on the pool's meta layer (korm 1.5's table). Every
//! instance of a service may run a [`Scheduler`]; a run is claimed by moving the row's
//! `next_run_at` forward with a compare-and-set (to an hour later, then to the next slot when
//! the run ends), so one instance takes each backup; a run longer than an hour, or one whose
//! process died, is taken again by the next instance whose clock passes that hour.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use jiff::civil::Weekday;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, Zoned};
use serde_json::{Value, json};

use super::{BackupInfo, Backups};
use crate::error::{Error, Result};
use crate::pool::Pool;

/// The unit of an interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Minute,
    Hour,
    Day,
    Week,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Minute => "minute",
            Unit::Hour => "hour",
            Unit::Day => "day",
            Unit::Week => "week",
        }
    }
}

/// When a schedule runs: every `n` minutes, hours, days or weeks, at a wall-clock time in a
/// time zone. Parsed from text (`every day at 02:00`) or from korm 1.5's `interval_spec`
/// JSON (`{"unit":"day","hour":2,"minute":0}`).
///
/// ```
/// use korm::backup::schedule::Interval;
/// let nightly: Interval = "every day at 02:00".parse()?;
/// assert_eq!(nightly.to_json()["unit"], "day");
/// assert!("every day at 25:00".parse::<Interval>().is_err());
/// assert!("every fortnight".parse::<Interval>().is_err());
/// # Ok::<(), korm::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Interval {
    unit: Unit,
    every: u32,
    hour: i8,
    minute: i8,
    weekday: Option<Weekday>,
    zone: Option<String>,
    starts_now: bool,
}

fn bad(text: &str, reason: impl Into<String>) -> Error {
    Error::InvalidOption {
        option: "backup schedule",
        reason: format!("{:?} {}", crate::error::clip(text), reason.into()),
    }
}

fn weekday(name: &str) -> Option<Weekday> {
    Some(match name {
        "monday" => Weekday::Monday,
        "tuesday" => Weekday::Tuesday,
        "wednesday" => Weekday::Wednesday,
        "thursday" => Weekday::Thursday,
        "friday" => Weekday::Friday,
        "saturday" => Weekday::Saturday,
        "sunday" => Weekday::Sunday,
        _ => return None,
    })
}

fn weekday_name(day: Weekday) -> &'static str {
    match day {
        Weekday::Monday => "monday",
        Weekday::Tuesday => "tuesday",
        Weekday::Wednesday => "wednesday",
        Weekday::Thursday => "thursday",
        Weekday::Friday => "friday",
        Weekday::Saturday => "saturday",
        Weekday::Sunday => "sunday",
    }
}

impl FromStr for Interval {
    type Err = Error;

    /// `every [n] minute(s)|hour(s)|day(s)|week(s) [on <weekday>] [at HH:MM | at :MM]
    /// [in <zone>] [starting now]`.
    fn from_str(text: &str) -> Result<Interval> {
        let lower = text.trim().to_ascii_lowercase();
        let mut words = lower.split_whitespace().peekable();
        if words.next() != Some("every") {
            return Err(bad(text, "starts with `every`"));
        }
        let mut every = 1u32;
        if let Some(n) = words.peek().and_then(|w| w.parse::<u32>().ok()) {
            if n == 0 || n > 1000 {
                return Err(bad(text, "counts 1 to 1000 units"));
            }
            every = n;
            words.next();
        }
        let unit = match words.next() {
            Some("minute" | "minutes") => Unit::Minute,
            Some("hour" | "hours") => Unit::Hour,
            Some("day" | "days") => Unit::Day,
            Some("week" | "weeks") => Unit::Week,
            other => {
                return Err(bad(
                    text,
                    format!("has unit {other:?}; korm knows minute, hour, day and week"),
                ));
            }
        };
        let mut interval = Interval {
            unit,
            every,
            hour: 0,
            minute: 0,
            weekday: None,
            zone: None,
            starts_now: false,
        };
        while let Some(word) = words.next() {
            match word {
                "on" if unit == Unit::Week => {
                    let day = words.next().unwrap_or_default();
                    interval.weekday = Some(
                        weekday(day).ok_or_else(|| bad(text, format!("has no weekday {day:?}")))?,
                    );
                }
                "at" if unit != Unit::Minute => {
                    let at = words.next().unwrap_or_default();
                    let (h, m) = at
                        .split_once(':')
                        .ok_or_else(|| bad(text, "needs at HH:MM"))?;
                    if m.len() != 2 {
                        return Err(bad(text, "needs at HH:MM, the minute in two digits"));
                    }
                    let m: i8 = m
                        .parse()
                        .ok()
                        .filter(|m: &i8| (0..60).contains(m))
                        .ok_or_else(|| bad(text, "has a minute outside 00 to 59"))?;
                    interval.minute = m;
                    if unit == Unit::Hour {
                        if !h.is_empty() {
                            return Err(bad(text, "says the minute of an hourly run as at :MM"));
                        }
                    } else {
                        interval.hour = h
                            .parse()
                            .ok()
                            .filter(|h| (0..24).contains(h))
                            .ok_or_else(|| bad(text, "has an hour outside 00 to 23"))?;
                    }
                }
                "in" => {
                    // Zone names keep their case (`Europe/Paris`): take it from the original.
                    let zone = text
                        .split_whitespace()
                        .skip_while(|w| !w.eq_ignore_ascii_case("in"))
                        .nth(1)
                        .unwrap_or_default()
                        .to_owned();
                    words.next();
                    TimeZone::get(&zone)
                        .map_err(|e| bad(text, format!("names no time zone korm knows ({e})")))?;
                    interval.zone = Some(zone);
                }
                "starting" if words.peek() == Some(&"now") => {
                    words.next();
                    interval.starts_now = true;
                }
                other => {
                    return Err(bad(
                        text,
                        format!("has {other:?} where korm expects on, at, in or starting now"),
                    ));
                }
            }
        }
        if unit == Unit::Week && interval.weekday.is_none() {
            interval.weekday = Some(Weekday::Monday);
        }
        Ok(interval)
    }
}

impl Interval {
    /// The interval as `interval_spec` JSON: korm 1.5's `unit`, `hour`, `minute` and
    /// `startsNow`, with korm-rs's `every`, `weekday` and `tz` when they are not the default.
    pub fn to_json(&self) -> Value {
        let mut spec = json!({"unit": self.unit.name(), "hour": self.hour, "minute": self.minute});
        if self.every != 1 {
            spec["every"] = self.every.into();
        }
        if let Some(day) = self.weekday {
            spec["weekday"] = weekday_name(day).into();
        }
        if let Some(zone) = &self.zone {
            spec["tz"] = zone.clone().into();
        }
        if self.starts_now {
            spec["startsNow"] = true.into();
        }
        spec
    }

    /// An interval from `interval_spec` JSON (korm 1.5's, or korm-rs's).
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for JSON that is not an interval.
    pub fn from_json(spec: &Value) -> Result<Interval> {
        let text = spec.to_string();
        let unit = match spec["unit"].as_str() {
            Some("minute") => Unit::Minute,
            Some("hour") => Unit::Hour,
            Some("day") => Unit::Day,
            Some("week") => Unit::Week,
            _ => return Err(bad(&text, "has no unit korm knows")),
        };
        let small = |key: &str, max: i64| -> Result<i8> {
            match spec.get(key) {
                None | Some(Value::Null) => Ok(0),
                Some(v) => v
                    .as_i64()
                    .filter(|n| (0..max).contains(n))
                    .and_then(|n| i8::try_from(n).ok())
                    .ok_or_else(|| bad(&text, format!("has a {key} out of range"))),
            }
        };
        let zone = spec["tz"].as_str().map(str::to_owned);
        if let Some(zone) = &zone {
            TimeZone::get(zone).map_err(|e| bad(&text, format!("names no time zone ({e})")))?;
        }
        Ok(Interval {
            unit,
            every: spec["every"]
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| (1..=1000).contains(n))
                .unwrap_or(1),
            hour: small("hour", 24)?,
            minute: small("minute", 60)?,
            weekday: match spec["weekday"].as_str() {
                Some(day) => Some(weekday(day).ok_or_else(|| bad(&text, "has no such weekday"))?),
                None if unit == Unit::Week => Some(Weekday::Monday),
                None => None,
            },
            zone,
            starts_now: spec["startsNow"].as_bool().unwrap_or(false),
        })
    }

    fn zone(&self) -> TimeZone {
        self.zone
            .as_deref()
            .and_then(|z| TimeZone::get(z).ok())
            .unwrap_or(TimeZone::UTC)
    }

    /// The first run strictly after `after`: now itself for `starting now`.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] when the time is out of jiff's range.
    pub fn first_after(&self, after: Timestamp) -> Result<Timestamp> {
        if self.starts_now {
            return Ok(after);
        }
        self.next_slot(after, 1)
    }

    /// The run after the one due at `previous`, the first one later than `now` (runs missed
    /// while no instance ran are not made up: one backup, then on schedule again).
    ///
    /// # Errors
    /// [`Error::InvalidOption`] when the time is out of jiff's range.
    pub fn next_after(&self, previous: Timestamp, now: Timestamp) -> Result<Timestamp> {
        let mut next = self.next_slot(previous, self.every)?;
        if next <= now {
            next = self.next_slot(now, 1)?;
        }
        Ok(next)
    }

    /// The first matching time after `after`, `skip` units on (a match at `after` itself
    /// counts as none).
    fn next_slot(&self, after: Timestamp, skip: u32) -> Result<Timestamp> {
        let range = |e: jiff::Error| bad(&self.to_json().to_string(), e.to_string());
        let zone = self.zone();
        let now: Zoned = after.to_zoned(zone.clone());
        let skip = i64::from(skip.max(1));
        let at = |date: jiff::civil::Date| -> Result<Zoned> {
            date.at(self.hour, self.minute, 0, 0)
                .to_zoned(zone.clone())
                .map_err(range)
        };
        let next = match self.unit {
            // Slots are the multiples of `every` minutes since the epoch: the next one is one
            // slot on, whatever `skip` (which counts single units in the other branches).
            Unit::Minute => {
                let step = 60_000 * i64::from(self.every);
                let ms = after.as_millisecond();
                let slot = (ms.div_euclid(step) + 1) * step;
                return Timestamp::from_millisecond(slot).map_err(range);
            }
            Unit::Hour => {
                let start = now
                    .with()
                    .minute(self.minute)
                    .second(0)
                    .subsec_nanosecond(0)
                    .build()
                    .map_err(range)?;
                let mut next = start;
                if next.timestamp() <= after {
                    next = next.checked_add(1.hour()).map_err(range)?;
                }
                if skip > 1 {
                    next = next.checked_add((skip - 1).hours()).map_err(range)?;
                }
                next
            }
            Unit::Day => {
                let mut next = at(now.date())?;
                if next.timestamp() <= after {
                    next = at(now.date().checked_add(1.day()).map_err(range)?)?;
                }
                if skip > 1 {
                    next = at(next.date().checked_add((skip - 1).days()).map_err(range)?)?;
                }
                next
            }
            Unit::Week => {
                let target = self.weekday.unwrap_or(Weekday::Monday);
                let mut date = now.date();
                while date.weekday() != target {
                    date = date.tomorrow().map_err(range)?;
                }
                let mut next = at(date)?;
                if next.timestamp() <= after {
                    next = at(date.checked_add(7.days()).map_err(range)?)?;
                }
                if skip > 1 {
                    next = at(next
                        .date()
                        .checked_add((7 * (skip - 1)).days())
                        .map_err(range)?)?;
                }
                next
            }
        };
        Ok(next.timestamp())
    }
}

/// Which backups to keep after each scheduled run (B4), per layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Keep every backup.
    All,
    /// Keep none but the one just taken.
    None,
    /// Keep those taken less than this many days ago.
    NewerThanDays(u32),
    /// Keep the newest this many of each layer.
    NewestPerLayer(u32),
}

impl FromStr for Retention {
    type Err = Error;

    /// `all`, `none`, `newer than 7 days` (or `7d`), `newest 10`.
    fn from_str(text: &str) -> Result<Retention> {
        let lower = text.trim().to_ascii_lowercase();
        let words: Vec<&str> = lower.split_whitespace().collect();
        let number = |w: &str| {
            w.parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| bad(text, "needs a count above zero"))
        };
        let bad_retention = || Error::InvalidOption {
            option: "backup retention",
            reason: format!(
                "{:?} is not all, none, `newer than N days` or `newest N`",
                crate::error::clip(text)
            ),
        };
        Ok(match words[..] {
            ["all"] => Retention::All,
            ["none"] => Retention::None,
            ["newer", "than", n, "day" | "days"] => Retention::NewerThanDays(number(n)?),
            [n] if n.ends_with('d') => Retention::NewerThanDays(number(&n[..n.len() - 1])?),
            ["newest", n] => Retention::NewestPerLayer(number(n)?),
            _ => return Err(bad_retention()),
        })
    }
}

/// Applies `retention` to the backups of `layer`: deletes what it does not keep (never
/// `keep`, the one just taken). Returns the keys deleted.
pub(crate) async fn prune(
    backups: &Backups<'_>,
    layer: &str,
    retention: Retention,
    keep: Option<&crate::depot::DepotKey>,
    now: Timestamp,
) -> Result<Vec<crate::depot::DepotKey>> {
    let list = backups.list(Some(layer)).await?;
    // Backups listed after the one just taken (the list is in time order: folder by second,
    // then file name, a time-prefixed UUID) are another run's (two schedules of one layer due
    // together, another instance's clock ahead): that run prunes for itself. Counted here,
    // each run would delete the other's and keep only its own. Without the one just taken in
    // the list, every other counts, and it counts as the newest.
    let older = keep
        .and_then(|keep| list.iter().position(|e| &e.key == keep))
        .unwrap_or(list.len());
    let newest_first: Vec<_> = list.into_iter().take(older).rev().collect();
    let kept_already = usize::from(keep.is_some());
    let mut doomed = Vec::new();
    for (i, entry) in newest_first.iter().enumerate() {
        let i = i + kept_already;
        let drop = match retention {
            Retention::All => false,
            Retention::None => true,
            Retention::NewestPerLayer(n) => i >= n as usize,
            Retention::NewerThanDays(days) => {
                let taken = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", &entry.taken_at)
                    .ok()
                    .and_then(|t| t.to_zoned(TimeZone::UTC).ok())
                    .map(|z| z.timestamp());
                // Further back than time goes (millions of days): nothing is that old.
                let limit = now
                    .checked_sub(jiff::SignedDuration::from_hours(24 * i64::from(days)))
                    .unwrap_or(jiff::Timestamp::MIN);
                taken.is_some_and(|t| t < limit)
            }
        };
        if drop {
            doomed.push(entry.key.clone());
        }
    }
    for key in &doomed {
        backups.depot().delete(key).await?;
    }
    Ok(doomed)
}

/// A schedule's row in `__korm_backups__`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScheduleRow {
    pub(crate) id: String,
    pub(crate) layer: String,
    pub(crate) spec: String,
    pub(crate) next_run_at: i64,
    pub(crate) last_run_at: Option<i64>,
}

/// A callback told of every backup a [`Scheduler`] takes.
type OnBackup = Arc<dyn Fn(&BackupInfo) + Send + Sync>;

/// Runs a pool's scheduled backups: each instance of a service may run one; the schedules'
/// rows on the meta layer make each backup run once.
#[derive(Clone)]
pub struct Scheduler {
    pool: Pool,
    depot: String,
    schedules: Vec<(String, Interval)>,
    retention: Retention,
    taken: Option<OnBackup>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("depot", &self.depot)
            .field("schedules", &self.schedules)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

/// The id of a schedule's row: the same on every instance for the same layer and interval
/// (korm 1.5 draws a random one per instance), so instances share one row.
fn schedule_id(layer: &str, spec: &Value) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{layer}\n{spec}").as_bytes());
    let h = hex::encode(&digest[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// How long after a failed scheduled backup its schedule is due again (5 minutes).
const RETRY_AFTER_MS: i64 = 5 * 60 * 1000;

/// How long a run holds its schedule before another instance may take it as abandoned (its
/// process died mid-run): a run taking longer can be started twice.
const RUN_LEASE_MS: i64 = 60 * 60 * 1000;

impl Scheduler {
    /// The scheduled backups of `pool` into its depot `depot`, with no schedule yet and
    /// retention [`Retention::All`]. Schedules need pool metadata (B1): they are kept on the
    /// meta layer.
    ///
    /// # Errors
    /// [`Error::PoolConfig`] for a pool without a meta layer, [`Error::UnknownDepot`].
    pub fn new(pool: &Pool, depot: &str) -> Result<Scheduler> {
        if pool.meta_layer().is_none() {
            return Err(Error::PoolConfig {
                reason: "scheduled backups keep their schedules in pool metadata: open the pool \
                         with PoolBuilder::with_meta"
                    .to_owned(),
            });
        }
        Backups::new(pool, depot)?;
        Ok(Scheduler {
            pool: pool.clone(),
            depot: depot.to_owned(),
            schedules: Vec::new(),
            retention: Retention::All,
            taken: None,
        })
    }

    /// Adds a schedule for `layer` (a layer's name, or `*` for every layer).
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for an interval that does not parse, [`Error::UnknownLayer`].
    pub fn schedule(mut self, layer: &str, interval: &str) -> Result<Scheduler> {
        if layer != "*" && !self.pool.layer_names().any(|l| l == layer) {
            return Err(Error::UnknownLayer {
                layer: layer.to_owned(),
                rn: format!("backup schedule {interval:?}"),
                layers: self.pool.layer_names().collect::<Vec<_>>().join(", "),
            });
        }
        self.schedules.push((layer.to_owned(), interval.parse()?));
        Ok(self)
    }

    /// Sets what is kept after each run.
    #[must_use]
    pub fn with_retention(mut self, retention: Retention) -> Scheduler {
        self.retention = retention;
        self
    }

    /// Calls `f` with every backup this instance takes.
    #[must_use]
    pub fn on_backup(mut self, f: impl Fn(&BackupInfo) + Send + Sync + 'static) -> Scheduler {
        self.taken = Some(Arc::new(f));
        self
    }

    fn meta(&self) -> Result<&crate::layer::LayerHandle> {
        let meta = self.pool.meta_layer().unwrap_or_default();
        self.pool
            .layers()
            .iter()
            .find(|(name, _)| name == meta)
            .map(|(_, h)| h)
            .ok_or_else(|| Error::PoolConfig {
                reason: "the pool's meta layer is gone".to_owned(),
            })
    }

    /// Writes the schedules' rows (those already there keep their next run).
    ///
    /// # Errors
    /// A database error on the meta layer.
    pub async fn register(&self, now: Timestamp) -> Result<()> {
        let meta = self.meta()?.layer();
        for (layer, interval) in &self.schedules {
            let spec = interval.to_json();
            let row = ScheduleRow {
                id: schedule_id(layer, &spec),
                layer: layer.clone(),
                spec: spec.to_string(),
                next_run_at: interval.first_after(now)?.as_millisecond(),
                last_run_at: None,
            };
            meta.backups()
                .insert_schedule(&row, now.as_millisecond())
                .await?;
        }
        Ok(())
    }

    /// Runs every schedule due at `now` that this instance claims first: its backups taken,
    /// then retention applied. Returns the backups taken here. A backup that fails does not
    /// stop the others: every due schedule and every layer of a `*` schedule is tried, and a
    /// schedule with a failed backup is due again five minutes later (not at its next slot).
    ///
    /// # Errors
    /// The first backup error, once every due backup was tried (the backups taken before
    /// and after it stay; its schedule is due again in five minutes, the others at their next
    /// run), or a database error reading or claiming the schedules.
    pub async fn run_due(&self, now: Timestamp) -> Result<Vec<BackupInfo>> {
        self.register(now).await?;
        let meta = self.meta()?.layer();
        let mut taken = Vec::new();
        let mut failed = None;
        let ours: Vec<String> = self
            .schedules
            .iter()
            .map(|(l, i)| schedule_id(l, &i.to_json()))
            .collect();
        for row in meta.backups().schedules().await? {
            if row.next_run_at > now.as_millisecond() || !ours.contains(&row.id) {
                continue;
            }
            let interval = Interval::from_json(
                &serde_json::from_str(&row.spec).map_err(|e| bad(&row.spec, e.to_string()))?,
            )?;
            let previous = Timestamp::from_millisecond(row.next_run_at)
                .map_err(|e| bad(&row.spec, e.to_string()))?;
            let next = interval.next_after(previous, now)?.as_millisecond();
            // Claimed first only until `lease` (the run's own time, at most the next slot):
            // a process that dies mid-run leaves the schedule due again then, not at its next
            // slot (a week later, for a weekly one). The run moves it on to `next` at its end.
            // From the real clock too: earlier schedules of this call may have taken long.
            let lease = now
                .max(Timestamp::now())
                .as_millisecond()
                .saturating_add(RUN_LEASE_MS)
                .min(next);
            if !meta
                .backups()
                .claim_schedule(&row.id, row.next_run_at, lease, now.as_millisecond())
                .await?
            {
                continue;
            }
            let backups = Backups::new(&self.pool, &self.depot)?;
            let layers: Vec<String> = if row.layer == "*" {
                self.pool.layer_names().map(str::to_owned).collect()
            } else {
                vec![row.layer.clone()]
            };
            let mut missed = false;
            for layer in layers {
                let info = match backups.now(&layer).await {
                    Ok(info) => info,
                    Err(e) => {
                        tracing::warn!(layer = %layer, error = %e, "scheduled backup failed");
                        failed.get_or_insert(e);
                        missed = true;
                        continue;
                    }
                };
                if let Some(f) = &self.taken {
                    f(&info);
                }
                let pruned = prune(&backups, &layer, self.retention, Some(&info.key), now).await;
                taken.push(info);
                if let Err(e) = pruned {
                    failed.get_or_insert(e);
                }
            }
            // A missed backup is tried again soon rather than at the next slot (a day
            // later, say): the schedule is claimed back to run in `RETRY_AFTER_MS` (the whole
            // run again: a `*` schedule backs up its other layers again too).
            let retry = now.as_millisecond() + RETRY_AFTER_MS;
            let then = if missed && retry < next { retry } else { next };
            if then != lease
                && let Err(e) = meta
                    .backups()
                    .claim_schedule(&row.id, lease, then, now.as_millisecond())
                    .await
            {
                failed.get_or_insert(e);
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(taken),
        }
    }

    /// Runs the schedules in the background until the returned handle is aborted, the pool
    /// closes, or every other clone of the pool is dropped (the task does not keep a pool
    /// alive on its own): checks every `poll` (at most a minute late), and logs a failed run
    /// (`tracing`) without stopping.
    pub fn start(self, poll: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                if self.pool.is_closed() || self.pool.is_last_clone() {
                    return;
                }
                if let Err(e) = self.run_due(Timestamp::now()).await {
                    tracing::warn!(error = %e, "scheduled backup failed");
                }
                tokio::time::sleep(poll).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    #[test]
    fn daily_runs_at_the_wall_clock_time_across_dst() {
        let i: Interval = "every day at 02:00".parse().unwrap();
        assert_eq!(
            i.first_after(ts("2026-03-01T01:00:00Z")).unwrap(),
            ts("2026-03-01T02:00:00Z")
        );
        assert_eq!(
            i.first_after(ts("2026-03-01T02:00:00Z")).unwrap(),
            ts("2026-03-02T02:00:00Z")
        );
        // Paris skips 02:00-03:00 on 2026-03-29: a 02:30 run happens at 03:30 local.
        let paris: Interval = "every day at 02:30 in Europe/Paris".parse().unwrap();
        assert_eq!(
            paris.first_after(ts("2026-03-28T12:00:00Z")).unwrap(),
            ts("2026-03-29T01:30:00Z")
        );
        // And the next is 02:30 summer time (00:30 UTC).
        assert_eq!(
            paris
                .next_after(ts("2026-03-29T01:30:00Z"), ts("2026-03-29T01:30:00Z"))
                .unwrap(),
            ts("2026-03-30T00:30:00Z")
        );
        // On 2026-10-25 02:30 happens twice: it runs once, at the first.
        let first = paris.first_after(ts("2026-10-24T12:00:00Z")).unwrap();
        assert_eq!(first, ts("2026-10-25T00:30:00Z"));
        assert_eq!(
            paris.next_after(first, first).unwrap(),
            ts("2026-10-26T01:30:00Z")
        );
    }

    #[test]
    fn other_units_and_korm_1_5_json() {
        let h: Interval = "every 6 hours at :15".parse().unwrap();
        let first = h.first_after(ts("2026-01-01T00:20:00Z")).unwrap();
        assert_eq!(first, ts("2026-01-01T01:15:00Z"));
        assert_eq!(
            h.next_after(first, first).unwrap(),
            ts("2026-01-01T07:15:00Z")
        );
        let m: Interval = "every 15 minutes".parse().unwrap();
        let first = m.first_after(ts("2026-01-01T00:20:00Z")).unwrap();
        assert_eq!(first, ts("2026-01-01T00:30:00Z"));
        assert_eq!(
            m.next_after(first, first).unwrap(),
            ts("2026-01-01T00:45:00Z")
        );
        // Missed runs are not made up: the next slot after now.
        assert_eq!(
            m.next_after(first, ts("2026-01-01T02:01:00Z")).unwrap(),
            ts("2026-01-01T02:15:00Z")
        );
        let two: Interval = "every 2 minutes starting now".parse().unwrap();
        let first = two.first_after(ts("2026-01-01T00:00:30Z")).unwrap();
        assert_eq!(first, ts("2026-01-01T00:00:30Z"));
        assert_eq!(
            two.next_after(first, first).unwrap(),
            ts("2026-01-01T00:02:00Z")
        );
        let w: Interval = "every week on friday at 03:30".parse().unwrap();
        // 2026-01-01 is a Thursday.
        assert_eq!(
            w.first_after(ts("2026-01-01T12:00:00Z")).unwrap(),
            ts("2026-01-02T03:30:00Z")
        );
        // korm 1.5's spec from the fixture.
        let k = Interval::from_json(&json!({"unit":"day","hour":2,"minute":0,"startsNow":true}))
            .unwrap();
        assert_eq!(
            k.first_after(ts("2026-11-26T16:13:58Z")).unwrap(),
            ts("2026-11-26T16:13:58Z")
        );
        assert_eq!(
            k.next_after(ts("2026-11-26T16:13:58Z"), ts("2026-11-26T16:13:58Z"))
                .unwrap(),
            ts("2026-11-27T02:00:00Z")
        );
        assert_eq!(Interval::from_json(&k.to_json()).unwrap(), k);
        for bad in [
            "each day",
            "every day at 2",
            "every day at 24:00",
            "every 0 days",
            "every day in Mars/Base",
        ] {
            assert!(bad.parse::<Interval>().is_err(), "{bad}");
        }
    }

    #[test]
    fn retention_parses() {
        assert_eq!("all".parse::<Retention>().unwrap(), Retention::All);
        assert_eq!("none".parse::<Retention>().unwrap(), Retention::None);
        assert_eq!(
            "newer than 7 days".parse::<Retention>().unwrap(),
            Retention::NewerThanDays(7)
        );
        assert_eq!(
            "newest 3".parse::<Retention>().unwrap(),
            Retention::NewestPerLayer(3)
        );
        assert!("newest 0".parse::<Retention>().is_err());
        assert!("some".parse::<Retention>().is_err());
    }
}
