//! References: resolve paths, batched resolution, and the planning of filters and sorts
//! through references.
//!
//! Resolution goes one hop at a time. Each hop walks the rows in hand along the remaining
//! steps of every resolve path, collects the RN strings it meets, and fetches them grouped
//! per layer and table: one `fetch` (one statement per chunk of ids) per group, however many
//! items hold the references. A hop consumes at least one step of its path, so resolution
//! ends after at most as many hops as the longest path has steps, cycles included.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

use crate::error::{Error, Result, clip};
use crate::layer::LayerHandle;
use crate::layer::schema::TableSchema;
use crate::model::{Cell, ColumnKind, Resolved, RnMap, StoredRow};
use crate::pool::Pool;
use crate::query::filter::{CompareOp, FilterNode};
use crate::query::{FieldPath, Filter, PathStep};
use crate::rn::Rn;

/// The most steps a resolve path may have.
const MAX_STEPS: usize = 32;

/// One step of a resolve path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// `.key` (or the first field).
    Key(String),
    /// `*`: every key (and, for a key holding an array, its elements).
    AnyKey,
    /// `[n]`.
    Index(usize),
    /// `[*]`: every element.
    AnyIndex,
}

/// A parsed resolve path: `owner`, `owner.*.*`, `owner.addresses[*].city`, `previousOwners[*]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResolvePath {
    steps: Vec<Step>,
}

impl ResolvePath {
    /// Parses a resolve path. Keys match `[A-Za-z_][A-Za-z0-9_]*` or are `*`; indexes are
    /// `[n]` (at most 9 digits) or `[*]`. Anything else is [`Error::InvalidPath`].
    pub(crate) fn parse(input: &str) -> Result<ResolvePath> {
        let fail = |reason: String| Error::InvalidPath {
            path: clip(input),
            reason,
        };
        if input.is_empty() {
            return Err(fail("the resolve path is empty".into()));
        }
        let bytes = input.as_bytes();
        let mut pos = 0;
        let mut steps = Vec::new();
        let mut expect_key = true;
        while pos < bytes.len() {
            if expect_key {
                if bytes[pos] == b'*' {
                    steps.push(Step::AnyKey);
                    pos += 1;
                } else {
                    let start = pos;
                    while pos < bytes.len()
                        && (bytes[pos].is_ascii_alphanumeric() || bytes[pos] == b'_')
                    {
                        pos += 1;
                    }
                    let key = &input[start..pos];
                    if key.is_empty() || key.as_bytes()[0].is_ascii_digit() {
                        return Err(fail(format!(
                            "a key is missing or unsafe at byte {start}: keys are \
                             [A-Za-z_][A-Za-z0-9_]* or *"
                        )));
                    }
                    if crate::model::PROTOTYPE_KEYS.contains(&key) {
                        return Err(fail(format!(
                            "key {key:?} reaches a JavaScript object's prototype, which korm \
                             1.5 refuses"
                        )));
                    }
                    steps.push(Step::Key(key.to_owned()));
                }
                expect_key = false;
            } else {
                match bytes[pos] {
                    b'.' => {
                        pos += 1;
                        expect_key = true;
                        if pos == bytes.len() {
                            return Err(fail("the path ends with '.'".into()));
                        }
                    }
                    b'[' => {
                        let close = input[pos..]
                            .find(']')
                            .map(|i| pos + i)
                            .ok_or_else(|| fail(format!("'[' at byte {pos} is never closed")))?;
                        let inside = &input[pos + 1..close];
                        if inside == "*" {
                            steps.push(Step::AnyIndex);
                        } else if !inside.is_empty()
                            && inside.len() <= 9
                            && inside.bytes().all(|b| b.is_ascii_digit())
                        {
                            let index = inside
                                .parse()
                                .map_err(|_| fail(format!("index {inside:?} is not a number")))?;
                            steps.push(Step::Index(index));
                        } else {
                            return Err(fail(format!(
                                "[{}] at byte {pos} is not an index: use [n] or [*]",
                                clip(inside)
                            )));
                        }
                        pos = close + 1;
                    }
                    other => {
                        return Err(fail(format!(
                            "unexpected {:?} at byte {pos}: expected '.' or '['",
                            char::from(other)
                        )));
                    }
                }
            }
            if steps.len() > MAX_STEPS {
                return Err(fail(format!(
                    "a resolve path has at most {MAX_STEPS} steps"
                )));
            }
        }
        Ok(ResolvePath { steps })
    }
}

/// Whether a string in stored data is an item RN korm can follow.
fn as_item_rn(text: &str) -> Option<Rn> {
    if !text.starts_with("[rn]") {
        return None;
    }
    Rn::parse(text).ok().filter(Rn::is_item)
}

/// Whether a key found in data may be followed by a wildcard.
fn safe_key(key: &str) -> bool {
    crate::model::validate_field_name(key).is_ok()
}

/// What a walk found, by RN text: the distinct step lists to go on with from each.
#[derive(Default)]
struct Found<'s> {
    wanted: RnMap<Vec<&'s [Step]>>,
}

impl<'s> Found<'s> {
    /// Records a reference. Only the `[rn]` prefix is checked here: each distinct text is
    /// parsed once, when its level is fetched, and one that does not parse is left as is.
    fn add(&mut self, text: &str, rest: &'s [Step]) {
        if !text.starts_with("[rn]") {
            return;
        }
        match self.wanted.get_mut(text) {
            Some(next) => {
                if !next.contains(&rest) {
                    next.push(rest);
                }
            }
            None => {
                self.wanted.insert(text.to_owned(), vec![rest]);
            }
        }
    }
}

/// The references (RN text, the steps left after it) that `steps` reach in a row.
fn walk_row<'s>(row: &StoredRow, steps: &'s [Step], out: &mut Found<'s>) {
    let Some((first, rest)) = steps.split_first() else {
        return;
    };
    let mut visit = |cell: Cell<'_>, wildcard: bool| match cell {
        Cell::Text(text) => out.add(text, rest),
        Cell::Json(text) => {
            if let Ok(value) = serde_json::from_str::<Value>(text) {
                walk_value(&value, rest, wildcard, out);
            }
        }
        _ => {}
    };
    match first {
        Step::Key(key) => {
            if let Some(cell) = row.cell(key) {
                visit(cell, false);
            }
        }
        Step::AnyKey => {
            for (_, cell) in row.cells() {
                visit(cell, true);
            }
        }
        // A row is an object: indexes reach nothing.
        Step::Index(_) | Step::AnyIndex => {}
    }
}

/// Walks a value: an RN string ends the hop (the steps left apply to the referenced item).
/// `after_wildcard`: the value was reached by `*`, so an array of references in it counts
/// as direct references.
fn walk_value<'s>(value: &Value, steps: &'s [Step], after_wildcard: bool, out: &mut Found<'s>) {
    if let Value::String(text) = value {
        out.add(text, steps);
        return;
    }
    let Some((first, rest)) = steps.split_first() else {
        if after_wildcard && let Value::Array(items) = value {
            for item in items {
                if let Value::String(text) = item {
                    out.add(text, steps);
                }
            }
        }
        return;
    };
    match (first, value) {
        (Step::Key(key), Value::Object(map)) => {
            if let Some(v) = map.get(key) {
                walk_value(v, rest, false, out);
            }
        }
        (Step::AnyKey, Value::Object(map)) => {
            for (key, v) in map {
                if safe_key(key) {
                    walk_value(v, rest, true, out);
                }
            }
        }
        (Step::Index(i), Value::Array(items)) => {
            if let Some(v) = items.get(*i) {
                walk_value(v, rest, false, out);
            }
        }
        (Step::AnyIndex | Step::AnyKey, Value::Array(items)) => {
            for v in items {
                walk_value(v, rest, false, out);
            }
        }
        _ => {}
    }
}

/// Options of a resolution.
#[derive(Debug, Clone, Default)]
pub(crate) struct ResolveOptions {
    /// The paths, as given (parsed when the read runs).
    pub(crate) paths: Vec<String>,
    /// Whether a missing referenced item (or a reference to a layer the pool does not have)
    /// is an error rather than a reference left unresolved.
    pub(crate) strict: bool,
}

impl ResolveOptions {
    /// The options to keep with the items a read makes: none when it resolves nothing.
    pub(crate) fn resolving(&self) -> Option<std::sync::Arc<ResolveOptions>> {
        (!self.paths.is_empty()).then(|| std::sync::Arc::new(self.clone()))
    }

    /// Parses the paths.
    pub(crate) fn parse(&self) -> Result<Vec<ResolvePath>> {
        self.paths.iter().map(|p| ResolvePath::parse(p)).collect()
    }
}

/// Resolves `paths` from `roots`: one batched fetch per layer and table per hop.
///
/// # Errors
/// [`Error::MissingReference`] in strict mode for the first referenced item that does not
/// exist (or lives in a layer the pool does not have); database errors.
pub(crate) async fn resolve(
    pool: &Pool,
    roots: &[&StoredRow],
    paths: &[ResolvePath],
    strict: bool,
) -> Result<Resolved> {
    let mut resolved = Resolved::default();
    if paths.is_empty() || roots.is_empty() {
        return Ok(resolved);
    }
    let mut found = Found::default();
    for row in roots {
        for path in paths {
            walk_row(row, &path.steps, &mut found);
        }
    }
    while !found.wanted.is_empty() {
        let wanted = std::mem::take(&mut found.wanted);
        let level = fetch_level(pool, wanted.keys(), strict).await?;
        for (rn, rests) in &wanted {
            if let Some((_, row)) = level.get(rn) {
                for rest in rests {
                    walk_row(row, rest, &mut found);
                }
            }
        }
        resolved.levels.push(level);
    }
    Ok(resolved)
}

/// Fetches the items at `rns`, one `fetch` per layer and table.
async fn fetch_level(
    pool: &Pool,
    rns: impl Iterator<Item = &String>,
    strict: bool,
) -> Result<RnMap<(Rn, Arc<StoredRow>)>> {
    // One group per layer and table: the layer, the table, and the RNs by id.
    // Several spellings of one RN (with or without mods) share the id: all are kept.
    type Group = (LayerHandle, String, RnMap<Vec<Rn>>);
    let mut groups: Vec<Group> = Vec::new();
    for text in rns {
        let Some(rn) = as_item_rn(text) else { continue };
        let layer = match pool.route(&rn) {
            Ok(layer) => layer.clone(),
            Err(e @ Error::PoolClosed) => return Err(e),
            Err(_) if !strict => continue,
            Err(e) => {
                return Err(Error::MissingReference {
                    rn: text.clone(),
                    reason: e.to_string(),
                });
            }
        };
        let (Some(table), Some(id)) = (rn.table_name(), rn.id()) else {
            continue;
        };
        let group = match groups
            .iter_mut()
            .position(|(l, t, _)| l.same_as(&layer) && *t == table)
        {
            Some(i) => &mut groups[i],
            None => {
                groups.push((layer, table, RnMap::default()));
                groups.last_mut().ok_or(Error::PoolClosed)?
            }
        };
        group.2.entry(id.to_owned()).or_default().push(rn.clone());
    }
    let mut level = RnMap::default();
    for (layer, table, by_id) in groups {
        let ids: Vec<String> = by_id.keys().cloned().collect();
        let rows = layer.fetch(&table, ids).await?;
        let mut by_id = by_id;
        for row in rows {
            let spellings = match by_id.remove(row.id()) {
                Some(rns) => rns,
                // A database comparing ids without case may return the stored spelling.
                None => match by_id
                    .keys()
                    .find(|k| k.eq_ignore_ascii_case(row.id()))
                    .cloned()
                    .and_then(|k| by_id.remove(&k))
                {
                    Some(rns) => rns,
                    None => continue,
                },
            };
            let row = Arc::new(row);
            for rn in spellings {
                level.insert(rn.as_str().to_owned(), (rn, Arc::clone(&row)));
            }
        }
        if strict && let Some(rn) = by_id.into_values().flatten().map(|rn| rn.to_string()).min() {
            return Err(Error::MissingReference {
                rn,
                reason: "no item is stored there".to_owned(),
            });
        }
    }
    Ok(level)
}

// ---- filters and sorts through references ---------------------------------------------------

/// Whether a path goes through a reference column of `schema` (`owner.username`): an RN
/// column, or a text column (a column first written with null is text, and may hold RNs
/// since) with steps after it. A text column holding no RNs has no referenced collections,
/// so such a path matches nothing, as a path into a scalar always did.
pub(crate) fn through_reference(schema: &TableSchema, path: &FieldPath) -> bool {
    !path.steps().is_empty()
        && matches!(
            schema.kind_of(path.column()),
            Some(ColumnKind::RnRef | ColumnKind::Text)
        )
}

/// A path's first step as a key, and the rest as path text: `owner.addresses[0].city` ->
/// (`addresses[0].city`). `None` when the step after the reference is not a key.
fn rest_of(path: &FieldPath) -> Option<String> {
    let (first, rest) = path.steps().split_first()?;
    let PathStep::Key(key) = first else {
        return None;
    };
    let mut text = key.clone();
    for step in rest {
        text.push_str(&step.to_string());
    }
    Some(text)
}

/// The most referenced collections one query may plan through, over all its hops: data
/// that points at more collections than this is refused rather than planned without bound.
const MAX_TARGET_GROUPS: usize = 256;

/// The most distinct collection prefixes one reference column may hold.
pub(crate) const MAX_PREFIXES: usize = 1000;

/// The referenced collections of one column, grouped by layer and table: RNs that spell one
/// collection differently (with or without mods) are one group, planned once.
struct TargetGroup {
    /// The prefixes (RN text before the id) found in the data for this table.
    prefixes: Vec<String>,
    /// A collection RN of the group, to route the group's own query.
    collection: Rn,
    table: String,
    layer: LayerHandle,
}

async fn target_groups(
    pool: &Pool,
    layer: &LayerHandle,
    table: &str,
    column: &str,
) -> Result<Vec<TargetGroup>> {
    let prefixes = layer.ref_prefixes(table, column).await?;
    if prefixes.len() > MAX_PREFIXES {
        return Err(Error::InvalidFilter {
            path: column.to_owned(),
            reason: format!(
                "the field references more than {MAX_PREFIXES} collections; korm does not plan a \
                 filter through it"
            ),
        });
    }
    let mut groups: Vec<TargetGroup> = Vec::new();
    for prefix in prefixes {
        // A prefix that does not make a collection RN of this pool is data korm can not
        // follow: rows holding it match no filter through the reference.
        let Ok(collection) = Rn::parse(&format!("{prefix}*")) else {
            continue;
        };
        let (true, Some(target_table)) = (collection.is_collection(), collection.table_name())
        else {
            continue;
        };
        let Ok(target) = pool.route(&collection) else {
            continue;
        };
        match groups
            .iter_mut()
            .find(|g| g.layer.same_as(target) && g.table == target_table)
        {
            Some(group) => group.prefixes.push(prefix),
            None => groups.push(TargetGroup {
                prefixes: vec![prefix],
                collection,
                table: target_table,
                layer: target.clone(),
            }),
        }
    }
    Ok(groups)
}

/// Rewrites every comparison through a reference column (`owner.username = "x"`) into a test
/// on the reference column itself: per referenced table, a semi-join when it is in the same
/// database and `semi_join` is allowed, otherwise "prefix in (...) and id in (<ids of the
/// matching items>)" after querying the referenced collection with the rest of the path.
pub(crate) fn plan_filter<'a>(
    pool: &'a Pool,
    layer: &'a LayerHandle,
    schema: &'a TableSchema,
    filter: Filter,
    semi_join: bool,
) -> BoxFuture<'a, Result<Filter>> {
    // The caller has checked `touches_reference`.
    Box::pin(async move {
        let budget = AtomicUsize::new(MAX_TARGET_GROUPS);
        plan_with(pool, layer, schema, filter, semi_join, &budget).await
    })
}

/// A boxed, type-erased future: the read path recurses through references (a filter on a
/// referenced collection is planned by the same planner).
pub(crate) type BoxFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

fn plan_with<'a>(
    pool: &'a Pool,
    layer: &'a LayerHandle,
    schema: &'a TableSchema,
    filter: Filter,
    semi_join: bool,
    budget: &'a AtomicUsize,
) -> BoxFuture<'a, Result<Filter>> {
    Box::pin(async move {
        let mut cache: HashMap<String, Arc<Vec<TargetGroup>>> = HashMap::new();
        rewrite(pool, layer, schema, filter, semi_join, budget, &mut cache).await
    })
}

/// Whether a filter has a path through a reference column of `schema`.
pub(crate) fn touches_reference(filter: &Filter, schema: &TableSchema) -> bool {
    let mut pending = vec![filter];
    while let Some(f) = pending.pop() {
        match &f.0 {
            FilterNode::Compare { path, .. }
            | FilterNode::Like { path, .. }
            | FilterNode::InList { path, .. } => {
                if FieldPath::parse(path).is_ok_and(|p| through_reference(schema, &p)) {
                    return true;
                }
            }
            FilterNode::And(children) | FilterNode::Or(children) => pending.extend(children),
            FilterNode::Not(inner) => pending.push(inner),
            FilterNode::RefIn { .. } | FilterNode::RefSemi { .. } => {}
        }
    }
    false
}

/// The leaf with its path replaced by `path`.
fn with_path(node: &FilterNode, path: String) -> Filter {
    Filter(match node {
        FilterNode::Compare { op, value, .. } => FilterNode::Compare {
            path,
            op: *op,
            value: value.clone(),
        },
        FilterNode::Like { pattern, .. } => FilterNode::Like {
            path,
            pattern: pattern.clone(),
        },
        FilterNode::InList { values, .. } => FilterNode::InList {
            path,
            values: values.clone(),
        },
        other => other.clone(),
    })
}

fn rewrite<'a>(
    pool: &'a Pool,
    layer: &'a LayerHandle,
    schema: &'a TableSchema,
    filter: Filter,
    semi_join: bool,
    budget: &'a AtomicUsize,
    cache: &'a mut HashMap<String, Arc<Vec<TargetGroup>>>,
) -> BoxFuture<'a, Result<Filter>> {
    Box::pin(rewrite_inner(
        pool, layer, schema, filter, semi_join, budget, cache,
    ))
}

async fn rewrite_inner(
    pool: &Pool,
    layer: &LayerHandle,
    schema: &TableSchema,
    filter: Filter,
    semi_join: bool,
    budget: &AtomicUsize,
    cache: &mut HashMap<String, Arc<Vec<TargetGroup>>>,
) -> Result<Filter> {
    Ok(Filter(match filter.0 {
        FilterNode::And(children) => {
            let mut out = Vec::with_capacity(children.len());
            for child in children {
                out.push(rewrite(pool, layer, schema, child, semi_join, budget, cache).await?);
            }
            FilterNode::And(out)
        }
        FilterNode::Or(children) => {
            let mut out = Vec::with_capacity(children.len());
            for child in children {
                out.push(rewrite(pool, layer, schema, child, semi_join, budget, cache).await?);
            }
            FilterNode::Or(out)
        }
        FilterNode::Not(inner) => FilterNode::Not(Box::new(
            rewrite(pool, layer, schema, *inner, semi_join, budget, cache).await?,
        )),
        node @ (FilterNode::Compare { .. }
        | FilterNode::Like { .. }
        | FilterNode::InList { .. }) => {
            let path = match &node {
                FilterNode::Compare { path, .. }
                | FilterNode::Like { path, .. }
                | FilterNode::InList { path, .. } => FieldPath::parse(path)?,
                _ => return Ok(Filter(node)),
            };
            if !through_reference(schema, &path) {
                return Ok(Filter(node));
            }
            let column = path.column().to_owned();
            let is_rn_column = schema.kind_of(&column) == Some(ColumnKind::RnRef);
            let groups = match cache.get(&column) {
                Some(groups) => Arc::clone(groups),
                None => {
                    let groups =
                        Arc::new(target_groups(pool, layer, &schema.table, &column).await?);
                    cache.insert(column.clone(), Arc::clone(&groups));
                    groups
                }
            };
            // A text column holding no RNs is a scalar: the path reaches nothing, as before.
            if !is_rn_column && groups.is_empty() {
                return Ok(Filter(node));
            }
            let Some(rest) = rest_of(&path) else {
                if !is_rn_column {
                    return Ok(Filter(node));
                }
                return Err(Error::InvalidFilter {
                    path: path.to_string(),
                    reason: "after a reference the path must name a field of the referenced \
                             item (owner.username)"
                        .to_owned(),
                });
            };
            let matching = through_groups(
                pool,
                layer,
                &column,
                &groups,
                with_path(&node, rest),
                semi_join,
                budget,
            )
            .await?;
            // `eq(path, null)` (and `in_list` with a null) also holds where the path reaches
            // nothing: no reference, or one to an item that does not exist (missing is null,
            // as everywhere).
            let eq_null = match &node {
                FilterNode::Compare {
                    op: CompareOp::Eq,
                    value: Value::Null,
                    ..
                } => true,
                FilterNode::InList { values, .. } => values.iter().any(Value::is_null),
                _ => false,
            };
            if !eq_null {
                return Ok(matching);
            }
            let existing = through_groups(
                pool,
                layer,
                &column,
                &groups,
                Filter(FilterNode::And(Vec::new())),
                semi_join,
                budget,
            )
            .await?;
            FilterNode::Or(vec![
                Filter(FilterNode::Compare {
                    path: column,
                    op: CompareOp::Eq,
                    value: Value::Null,
                }),
                Filter(FilterNode::Not(Box::new(existing))),
                matching,
            ])
        }
        other => other,
    }))
}

/// The test "the reference in `column` points at an item matching `sub_filter`", one
/// alternative per referenced table.
async fn through_groups(
    pool: &Pool,
    layer: &LayerHandle,
    column: &str,
    groups: &[TargetGroup],
    sub_filter: Filter,
    semi_join: bool,
    budget: &AtomicUsize,
) -> Result<Filter> {
    let mut alternatives = Vec::with_capacity(groups.len());
    for group in groups {
        let spent = budget.fetch_sub(1, Ordering::Relaxed);
        if spent == 0 || spent > MAX_TARGET_GROUPS {
            budget.store(0, Ordering::Relaxed);
            return Err(Error::InvalidFilter {
                path: column.to_owned(),
                reason: format!(
                    "the filter goes through more than {MAX_TARGET_GROUPS} referenced \
                     collections"
                ),
            });
        }
        if semi_join && group.layer.same_as(layer) {
            let Some(target_schema) = group.layer.table_schema(&group.table).await? else {
                continue;
            };
            let encrypted = target_schema
                .columns
                .iter()
                .any(|(_, kind)| *kind == ColumnKind::Encrypted);
            if !encrypted {
                let inner = plan_with(
                    pool,
                    &group.layer,
                    &target_schema,
                    sub_filter.clone(),
                    true,
                    budget,
                )
                .await?;
                alternatives.push(Filter(FilterNode::RefSemi {
                    column: column.to_owned(),
                    prefixes: group.prefixes.clone(),
                    target: Arc::new(target_schema),
                    filter: Box::new(inner),
                }));
                continue;
            }
        }
        // The referenced collection's own read path (its encrypted fields, its own
        // references) answers which items match.
        let rows = crate::item::select_rows(
            pool.clone(),
            group.collection.clone(),
            Some(sub_filter.clone()),
            (Vec::new(), crate::item::SortRules::default()),
            crate::query::dialect::Window::default(),
        )
        .await?;
        alternatives.push(Filter(FilterNode::RefIn {
            column: column.to_owned(),
            prefixes: group.prefixes.clone(),
            ids: rows.iter().map(|row| row.id().to_owned()).collect(),
        }));
    }
    Ok(match alternatives.len() {
        1 => alternatives.remove(0),
        _ => Filter(FilterNode::Or(alternatives)),
    })
}

/// The value at `path` of each row for an in-memory sort through references: each hop's
/// referenced rows are fetched in one batch per layer and table, and the rest of the path is
/// followed in them (through further references too). The key checks of SQL sorts hold: no
/// `[*]`, no encrypted value, no object or array unless `stringify`.
pub(crate) fn sort_keys_through_reference<'a>(
    pool: &'a Pool,
    rows: Vec<&'a StoredRow>,
    path: &'a FieldPath,
    rules: crate::item::SortRules,
) -> BoxFuture<'a, Result<Vec<Option<Value>>>> {
    Box::pin(async move {
        if path.has_wildcard() {
            return Err(Error::InvalidPath {
                path: path.to_string(),
                reason: "sort paths can not contain [*]: a sort key must be one value".into(),
            });
        }
        let column = path.column();
        let hop = |row: &StoredRow| -> Option<String> {
            match row.cell(column) {
                Some(Cell::Text(text)) if text.starts_with("[rn]") => Some(text.to_owned()),
                _ => None,
            }
        };
        let rest = match rest_of(path) {
            Some(rest) => Some(FieldPath::parse(&rest)?),
            None => None,
        };
        let mut unique: Vec<String> = match &rest {
            Some(_) => rows.iter().filter_map(|row| hop(row)).collect(),
            None => Vec::new(),
        };
        unique.sort_unstable();
        unique.dedup();
        let level = fetch_level(pool, unique.iter(), rules.strict).await?;
        // The referenced rows, once each, and their keys along the rest of the path.
        let targets: Vec<(&String, &StoredRow)> = unique
            .iter()
            .filter_map(|rn| level.get(rn).map(|(_, row)| (rn, &**row)))
            .collect();
        let target_keys = match &rest {
            Some(rest) if !targets.is_empty() => {
                let target_rows: Vec<&StoredRow> = targets.iter().map(|(_, row)| *row).collect();
                let keys = sort_keys_through_reference(pool, target_rows, rest, rules).await?;
                for ((rn, _), key) in targets.iter().zip(&keys) {
                    check_sort_key(path, rn, key.as_ref(), rules.stringify)?;
                }
                keys
            }
            _ => Vec::new(),
        };
        let by_rn: HashMap<&str, Option<Value>> = targets
            .iter()
            .map(|(rn, _)| rn.as_str())
            .zip(target_keys)
            .collect();
        Ok(rows
            .iter()
            .map(|row| match (&rest, hop(row)) {
                (Some(_), Some(rn)) => by_rn.get(rn.as_str()).cloned().flatten(),
                _ => value_at(row, path),
            })
            .collect())
    })
}

/// A sort key reached through a reference must be a scalar SQL could order by.
fn check_sort_key(path: &FieldPath, rn: &str, key: Option<&Value>, stringify: bool) -> Result<()> {
    match key {
        Some(value) if crate::model::is_envelope(value) => Err(Error::InvalidPath {
            path: path.to_string(),
            reason: "the field is encrypted: SQL never sees its cleartext, so it can not be \
                     sorted by"
                .to_owned(),
        }),
        Some(Value::Object(_)) if !stringify => Err(Error::NonScalarSort {
            path: path.to_string(),
            rn: rn.to_owned(),
            found: "an object",
        }),
        Some(Value::Array(_)) if !stringify => Err(Error::NonScalarSort {
            path: path.to_string(),
            rn: rn.to_owned(),
            found: "an array",
        }),
        _ => Ok(()),
    }
}

/// The value at a path of a row (a scalar column, or a step into a JSON column).
pub(crate) fn value_at(row: &StoredRow, path: &FieldPath) -> Option<Value> {
    let cell = row.cell(path.column())?;
    let value = match cell {
        Cell::Json(text) => serde_json::from_str(text).ok()?,
        other => other.to_value(),
    };
    let mut value = &value;
    for step in path.steps() {
        value = match (step, value) {
            (PathStep::Key(key), Value::Object(map)) => map.get(key)?,
            (PathStep::Index(i), Value::Array(items)) => items.get(*i)?,
            _ => return None,
        };
    }
    Some(value.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_paths_parse() {
        let p = ResolvePath::parse("owner.addresses[*].city").unwrap();
        assert_eq!(
            p.steps,
            [
                Step::Key("owner".into()),
                Step::Key("addresses".into()),
                Step::AnyIndex,
                Step::Key("city".into())
            ]
        );
        assert_eq!(
            ResolvePath::parse("owner.*.*").unwrap().steps,
            [Step::Key("owner".into()), Step::AnyKey, Step::AnyKey]
        );
        assert_eq!(
            ResolvePath::parse("previousOwners[2]").unwrap().steps,
            [Step::Key("previousOwners".into()), Step::Index(2)]
        );
        for bad in [
            "",
            "owner.",
            "owner..x",
            "owner; DROP TABLE x",
            "owner['x']",
            "owner[-1]",
            "owner[1",
            "1owner",
            "own er",
            "owner.\"x\"",
            "owner[9999999999]",
            "__proto__",
            "owner.constructor",
            "owner.prototype.x",
            "owner.*.__proto__",
        ] {
            assert!(
                matches!(ResolvePath::parse(bad), Err(Error::InvalidPath { .. })),
                "{bad:?} was accepted"
            );
        }
        let long = vec!["a"; 40].join(".");
        assert!(ResolvePath::parse(&long).is_err());
    }

    #[test]
    fn walking_stops_at_references_and_skips_unsafe_keys() {
        let a = "[rn]:users:free:3df3face-f377-4f86-9bb9-a9b4671a9441";
        let b = "[rn]:users:free:34a0a9ed-dd81-4b38-802d-6e9c840f2c34";
        // Only under keys a JavaScript reader must not follow.
        let c = "[rn]:users:free:0550ec20-c747-4ef9-87d4-613fe9d0c149";
        let value = serde_json::json!({
            "ok": a,
            "bad key; --": b,
            "__proto__": c,
            "constructor": c,
            "prototype": c,
            "list": [a, b, "[rn]:not an rn"],
            "deep": {"x": b},
        });
        let steps = [Step::AnyKey];
        let mut out = Found::default();
        walk_value(&value, &steps, false, &mut out);
        let mut found: Vec<&str> = out.wanted.keys().map(String::as_str).collect();
        found.sort_unstable();
        // `ok`, both list elements, and the garbage (parsed, and dropped, when its level is
        // fetched); not the unsafe key, not the nested one.
        let mut expected = vec![a, b, "[rn]:not an rn"];
        expected.sort_unstable();
        assert_eq!(found, expected);
    }
}
