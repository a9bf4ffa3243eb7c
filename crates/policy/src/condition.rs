//! Flow conditions: the `when` of a flow, an expression in CEL (the Common Expression Language) that is
//! true or false for one event of one customer.
//!
//! ```text
//! scores.churn_risk >= 60.0 && customer.email_consent && !("wholesale" in customer.tags)
//! ```
//!
//! A condition reads three variables, each a set of named fields ([`Schema::flows_default`] has the
//! fields nudge provides):
//!
//! - `event`: the event that is being decided on (`event.kind`, `event.value`, `event.currency`, …);
//! - `customer`: the customer's state after the event (`customer.orders_count`, `customer.tags`, …), and
//!   the adopted segments it belongs to (`"lapsing_vips" in customer.segments`, see `nudge segments`);
//! - `scores`: every score by name (`scores.churn_risk`, `scores.p_alive`, …), `scores.segment` and
//!   `scores.model_version`.
//!
//! # Behaviour, reviews, loyalty and engagement
//!
//! Flows can start on the triggers `product_viewed`, `product_added`, `cart_viewed`, `search`,
//! `review_posted`, `loyalty_changed`, `email_opened` (never by a machine open), `email_clicked` and
//! `unsubscribed` (an unsubscribe or a spam complaint), each fired when the event changed the state.
//! Their conditions read, beside the fields above:
//!
//! | field | type | absent when |
//! | --- | --- | --- |
//! | `customer.viewed_products_7d` | list of product ids viewed in the last 7 days, newest first | never (empty) |
//! | `customer.added_to_cart_7d` | list of product ids added to the cart in the last 7 days | never (empty) |
//! | `customer.last_review_rating` | int, stars of the newest published review | no rated review |
//! | `customer.last_review_sentiment` | double, its compound sentiment (−1 … 1) | no scored review |
//! | `customer.negative_reviews` | int, published reviews rated ≤ 2 or with sentiment ≤ −0.5 | never |
//! | `customer.loyalty_points` | int | no loyalty standing with points |
//! | `customer.loyalty_tier` | string | no tier |
//! | `customer.email_open_rate_90d` | double, human opens / delivered over 90 days | no delivery in 90 days |
//! | `customer.email_click_rate_90d` | double, clicks / delivered over 90 days | no delivery in 90 days |
//! | `customer.last_engaged_at` | timestamp of the newest human open or click | never engaged |
//! | `customer.suppressed` | bool, unsubscribed or complained of spam | never |
//! | `event.name` | string, a behaviour event's name as sent | not a behaviour event |
//! | `event.query` | string, a search's query | not a search |
//! | `event.rating` | int, a review's stars | not a rated review |
//! | `event.sentiment` | double, a review's compound sentiment | not a scored review |
//! | `event.points_change` | int, the points a loyalty change added (negative: spent) | not a loyalty change with points |
//!
//! A behaviour event's `event.product_ids` are the products it names. A suppressed customer gets no
//! marketing action from any flow (status `suppressed`); alerts to the team still go.
//!
//! Everything is checked when the configuration is loaded ([`Condition::compile`]), so a bad condition is
//! a configuration error with its line and column, never a surprise on a live event: syntax; unknown
//! variables, fields and functions (with a "did you mean" when a name is close); operators applied to
//! values of the wrong types (`customer.orders_count >= "two"`), including in a part that `&&`, `||` or
//! `? :` would skip for the values at hand (`false && customer.tags >= 3`); `==`, `!=` and `in` between
//! values of different types, which could never be true (or never false); parts without any field that
//! always fail (`timestamp("yesterday")`); and a result that is not true or false
//! (`customer.orders_count + 1`). Types are checked by evaluating every part of the condition against
//! sample values of the schema's types.
//!
//! # Values and types
//!
//! | [`FactType`] | in CEL | literals and functions |
//! | --- | --- | --- |
//! | `Bool` | `bool` | `true`, `false` |
//! | `Int` | `int` | `3`, `int(x)` |
//! | `Double` | `double` | `3.0`, `double(x)` |
//! | `Text` | `string` | `"vip"`, `s.startsWith("a")`, `s.contains("b")`, `size(s)` |
//! | `Timestamp` | `timestamp` | `timestamp("2026-01-01T00:00:00Z")`, `t - duration("720h")`, `t.getDayOfWeek()` |
//! | `TextList` | `list` of `string` | `"vip" in customer.tags`, `size(customer.tags)`, `customer.tags.exists(t, t.startsWith("b2b"))` |
//!
//! Numbers of the two kinds compare with each other (`customer.total_spent > 100` is fine), but arithmetic
//! does not mix them: `customer.total_spent / customer.orders_count` is a type error, write
//! `customer.total_spent / double(customer.orders_count)`. Durations take the units `h`, `m`, `s`, `ms`,
//! `us` and `ns` (`duration("720h")`; there is no `d`). Regular expressions (`matches`) are not available.
//!
//! # Missing values
//!
//! A field whose value the customer does not have (no order yet: `first_order_at`, `last_order_at`,
//! `days_since_last_order`; a score that was not computed) is given as [`FactValue::Null`] and is
//! *absent*: `has(customer.last_order_at)` is false. A condition that reads an absent field anyway cannot
//! be decided for that customer: [`Condition::eval`] gives an error that names the field
//! (`customer.last_order_at has no value (test it first with has(customer.last_order_at))`), and a flow
//! must not act on it. Nothing is ever `null`, so `customer.last_order_at == null` is rejected at load.
//! So test first what may be missing:
//!
//! ```text
//! has(customer.last_order_at) && customer.days_since_last_order > 90.0
//! ```
//!
//! CEL's `&&` is false as soon as one side is false, whatever the other side gives, errors included
//! (and `||` true as soon as one side is true), so the guard works on either side. Fields are never
//! filled in with a made-up default: "no order yet" never looks like "ordered 0 days ago".
//!
//! # Cost and bounds
//!
//! A condition is compiled once per load ([`Condition`] is cheap to clone and can be shared between
//! threads). Per event, [`Facts::prepare`] turns the facts into interpreter values once and
//! [`Condition::eval_prepared`] evaluates any number of conditions against them without copying.
//! Evaluation is bounded: a condition is at most [`MAX_SOURCE_BYTES`] long, nests at most
//! [`MAX_NESTING`] brackets and [`MAX_DEPTH`] operators deep, and loops (`all`, `exists`, `exists_one`, `map`, `filter`) nest at most
//! [`MAX_LOOP_NESTING`] deep; a panic inside the interpreter is caught and reported as an evaluation
//! error.
//!
//! # Explaining a decision
//!
//! [`Condition::explain`] evaluates a condition term by term for `nudge flows test`: the operands of
//! `&&` and `||`, flattened through nested parentheses, each with its source text and value, and for a
//! comparison the values of both sides (`scores.churn_risk >= 60.0` → `72.4 >= 60.0 → true`).
//!
//! The CEL interpreter (the `cel` crate) stays behind this module's types.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, OnceLock};

use cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue};
use cel::common::traits::Indexer;
use cel::common::types::{CelBool, CelDouble, CelInt, CelList, CelMap, CelString, CelTimestamp, Type};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::{Context, Env, ExecutionError, Program, Value};
use time::OffsetDateTime;

/// The longest condition accepted, in bytes.
pub const MAX_SOURCE_BYTES: usize = 4096;
/// The deepest nesting of brackets (`(`, `[`, `{`) in a condition.
pub const MAX_NESTING: usize = 16;
/// The deepest nesting of the parsed expression (operators, calls, field reads): `a + b + c` nests 2
/// deep, `a && b && c && d` 2 too (CEL balances chains of `&&` and `||`).
pub const MAX_DEPTH: usize = 32;
/// How deep loops (`all`, `exists`, `exists_one`, `map`, `filter`) may nest inside each other.
pub const MAX_LOOP_NESTING: usize = 2;

/// The variables a condition reads, in the order they are documented.
const VARIABLES: [&str; 3] = ["event", "customer", "scores"];

/// Names CEL resolves to types (`type(x) == int`); they are not variables.
const TYPE_NAMES: [&str; 12] = [
    "bool",
    "bytes",
    "double",
    "duration",
    "dyn",
    "int",
    "list",
    "map",
    "null_type",
    "string",
    "timestamp",
    "uint",
];

/// The type of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FactType {
    Bool,
    Int,
    Double,
    Text,
    Timestamp,
    TextList,
}

impl fmt::Display for FactType {
    /// The type's name in CEL, as error messages use it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FactType::Bool => "bool",
            FactType::Int => "int",
            FactType::Double => "double",
            FactType::Text => "string",
            FactType::Timestamp => "timestamp",
            FactType::TextList => "list of strings",
        })
    }
}

/// The fields of `event`, `customer` and `scores` and their types: what a condition may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    vars: [BTreeMap<String, FactType>; 3],
}

impl Default for Schema {
    fn default() -> Self {
        Schema::new()
    }
}

impl Schema {
    /// The three variables, without fields.
    pub fn new() -> Schema {
        Schema { vars: Default::default() }
    }

    /// Adds (or retypes) the field `var.field`.
    ///
    /// # Panics
    ///
    /// If `var` is not `event`, `customer` or `scores`.
    pub fn with_field(mut self, var: &str, field: &str, ty: FactType) -> Schema {
        let i = var_index(var).unwrap_or_else(|| panic!("unknown condition variable {var:?}: {VARIABLES:?}"));
        self.vars[i].insert(field.to_string(), ty);
        self
    }

    /// The fields nudge provides to flow conditions.
    pub fn flows_default() -> Schema {
        use FactType::*;
        let mut schema = Schema::new();
        for (field, ty) in [
            ("kind", Text),
            ("value", Double),
            ("currency", Text),
            ("order_id", Text),
            ("checkout_token", Text),
            ("product_ids", TextList),
            ("name", Text),
            ("query", Text),
            ("rating", Int),
            ("sentiment", Double),
            ("points_change", Int),
        ] {
            schema = schema.with_field("event", field, ty);
        }
        for (field, ty) in [
            ("id", Text),
            ("email_consent", Bool),
            ("sms_consent", Bool),
            ("orders_count", Int),
            ("total_spent", Double),
            ("aov", Double),
            ("first_order_at", Timestamp),
            ("last_order_at", Timestamp),
            ("days_since_last_order", Double),
            ("tags", TextList),
            ("segments", TextList),
            ("open_checkout_value", Double),
            ("viewed_products_7d", TextList),
            ("added_to_cart_7d", TextList),
            ("last_review_rating", Int),
            ("last_review_sentiment", Double),
            ("negative_reviews", Int),
            ("loyalty_points", Int),
            ("loyalty_tier", Text),
            ("email_open_rate_90d", Double),
            ("email_click_rate_90d", Double),
            ("last_engaged_at", Timestamp),
            ("suppressed", Bool),
        ] {
            schema = schema.with_field("customer", field, ty);
        }
        for (field, ty) in [
            ("churn_risk", Double),
            ("p_alive", Double),
            ("predicted_clv", Double),
            ("expected_orders_90d", Double),
            ("days_to_next_order", Double),
            ("abandon_propensity", Double),
            ("purchase_propensity_7d", Double),
            ("best_send_hour", Double),
            ("best_channel", Text),
            ("preferred_category", Text),
            ("next_best_offer", Text),
            ("model_versions", Text),
            ("segment", Text),
            ("model_version", Text),
        ] {
            schema = schema.with_field("scores", field, ty);
        }
        schema
    }

    /// The type of `var.field`, if the schema has it.
    pub fn field(&self, var: &str, field: &str) -> Option<FactType> {
        self.vars[var_index(var)?].get(field).copied()
    }

    /// The fields of `var` (empty for an unknown variable), by name.
    pub fn fields(&self, var: &str) -> impl Iterator<Item = (&str, FactType)> {
        var_index(var).into_iter().flat_map(move |i| self.vars[i].iter().map(|(k, v)| (k.as_str(), *v)))
    }

    /// Whether `facts` give each field of the schema a value of its type, or [`FactValue::Null`], and
    /// no other field: conditions were checked against the schema, so facts that stray from it can
    /// make them fail. The error names the first field that does.
    pub fn check_facts(&self, facts: &Facts) -> Result<(), String> {
        for (i, var) in VARIABLES.iter().enumerate() {
            let given = [&facts.event, &facts.customer, &facts.scores][i];
            for (field, ty) in &self.vars[i] {
                match given.get(field).map(FactValue::fact_type) {
                    None => return Err(format!("{var}.{field} is missing from the facts")),
                    Some(Some(got)) if got != *ty => {
                        return Err(format!("{var}.{field} is {got} in the facts, {ty} in the schema"));
                    }
                    Some(_) => {}
                }
            }
            if let Some(field) = given.keys().find(|f| !self.vars[i].contains_key(*f)) {
                return Err(format!("{var}.{field} is not in the schema"));
            }
        }
        Ok(())
    }

    /// Facts with every field set to a sample value of its type: what type checking evaluates against.
    fn probe_facts(&self) -> Facts {
        let sample = |ty: FactType| match ty {
            FactType::Bool => FactValue::Bool(true),
            FactType::Int => FactValue::Int(1),
            FactType::Double => FactValue::Double(1.5),
            FactType::Text => FactValue::Text("sample".into()),
            FactType::Timestamp => FactValue::Timestamp(time::macros::datetime!(2026-01-01 00:00 UTC)),
            // One element, so that the body of a loop over the list is evaluated too.
            FactType::TextList => FactValue::TextList(vec!["sample".into()]),
        };
        let map = |i: usize| self.vars[i].iter().map(|(k, ty)| (k.clone(), sample(*ty))).collect();
        Facts { event: map(0), customer: map(1), scores: map(2) }
    }
}

fn var_index(var: &str) -> Option<usize> {
    VARIABLES.iter().position(|v| *v == var)
}

/// One field's value.
#[derive(Debug, Clone, PartialEq)]
pub enum FactValue {
    Bool(bool),
    Int(i64),
    Double(f64),
    Text(String),
    Timestamp(OffsetDateTime),
    TextList(Vec<String>),
    /// No value (no order yet, a score not computed): the field is absent, `has(var.field)` is false.
    Null,
}

impl FactValue {
    /// The value's type; `None` for [`FactValue::Null`].
    pub fn fact_type(&self) -> Option<FactType> {
        Some(match self {
            FactValue::Bool(_) => FactType::Bool,
            FactValue::Int(_) => FactType::Int,
            FactValue::Double(_) => FactType::Double,
            FactValue::Text(_) => FactType::Text,
            FactValue::Timestamp(_) => FactType::Timestamp,
            FactValue::TextList(_) => FactType::TextList,
            FactValue::Null => return None,
        })
    }
}

/// What a condition is evaluated against: the fields of `event`, `customer` and `scores`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    pub event: BTreeMap<String, FactValue>,
    pub customer: BTreeMap<String, FactValue>,
    pub scores: BTreeMap<String, FactValue>,
}

impl Facts {
    /// The facts as interpreter values, built once and shared by every condition evaluated for this
    /// event ([`Condition::eval_prepared`]). Borrows the strings: nothing is copied.
    pub fn prepare(&self) -> PreparedFacts<'_> {
        PreparedFacts(Bound {
            vars: [Fields::new(&self.event), Fields::new(&self.customer), Fields::new(&self.scores)],
        })
    }
}

/// [`Facts`] ready for evaluation ([`Facts::prepare`]).
pub struct PreparedFacts<'a>(Bound<'a>);

impl fmt::Debug for PreparedFacts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedFacts").finish_non_exhaustive()
    }
}

/// The three variables as interpreter values; the interpreter looks variables up here, by the variable's
/// name (`customer`, for `has(customer.x)`) or, for the field reads a compiled condition makes, by the
/// field's path (`customer.orders_count`: see [`flatten_fields`]).
struct Bound<'a> {
    vars: [Fields<'a>; 3],
}

impl VariableResolver for Bound<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        // Called for every read: told apart by the first byte, without searching for the dot.
        let (i, var) = match variable.as_bytes().first()? {
            b'c' => (1, "customer"),
            b's' => (2, "scores"),
            b'e' => (0, "event"),
            _ => return None,
        };
        let rest = variable.strip_prefix(var)?;
        if rest.is_empty() {
            return Some(CowVal::Borrowed(&self.vars[i]));
        }
        self.vars[i].find(rest.strip_prefix('.')?).map(CowVal::Borrowed)
    }
}

/// One variable's fields, sorted by name, missing ones left out: a CEL map whose keys are the names.
#[derive(Debug, Clone)]
struct Fields<'a> {
    entries: Vec<(&'a str, Box<dyn Val + 'a>)>,
}

impl<'a> Fields<'a> {
    fn new(fields: &'a BTreeMap<String, FactValue>) -> Self {
        Fields { entries: fields.iter().filter_map(|(k, v)| Some((k.as_str(), cel_value(v)?))).collect() }
    }

    /// A linear search: a dozen fields, and names of equal length are few, so most comparisons are of
    /// lengths alone (faster than a binary search's byte comparisons).
    fn find(&self, field: &str) -> Option<&(dyn Val + 'a)> {
        self.entries.iter().find(|(k, _)| *k == field).map(|(_, v)| v.as_ref())
    }
}

impl Val for Fields<'_> {
    fn get_type(&self) -> &Type {
        <CelMap<'static> as Val>::cel_type()
    }

    fn cel_type() -> &'static Type {
        <CelMap<'static> as Val>::cel_type()
    }

    fn as_indexer<'b, 'v>(&'b self) -> Option<&'b (dyn Indexer + 'v)>
    where
        Self: 'v,
    {
        Some(self)
    }

    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v>
    where
        Self: 'v,
    {
        Box::new(self.clone())
    }
}

impl Indexer for Fields<'_> {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        let name = idx.downcast_ref::<CelString>().map_or("", |s| s.inner());
        self.find(name).map(CowVal::Borrowed).ok_or_else(|| ExecutionError::no_such_key(name))
    }

    fn steal<'v>(self: Box<Self>, idx: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError>
    where
        Self: 'v,
    {
        let name = idx.downcast_ref::<CelString>().map_or("", |s| s.inner());
        let mut entries = self.entries;
        match entries.binary_search_by(|(k, _)| (*k).cmp(name)) {
            Ok(i) => Ok(entries.swap_remove(i).1),
            Err(_) => Err(ExecutionError::no_such_key(name)),
        }
    }
}

/// The interpreter value of a fact; `None` for a missing one, which is left out of its map.
fn cel_value(v: &FactValue) -> Option<Box<dyn Val + '_>> {
    Some(match v {
        FactValue::Bool(b) => Box::new(CelBool::from(*b)),
        FactValue::Int(i) => Box::new(CelInt::from(*i)),
        FactValue::Double(d) => Box::new(CelDouble::from(*d)),
        FactValue::Text(s) => Box::new(CelString::from(s.as_str())),
        // Always within chrono's range (years ±262,143), wider than time's.
        FactValue::Timestamp(t) => Box::new(CelTimestamp::from(
            chrono::DateTime::from_timestamp(t.unix_timestamp(), t.nanosecond())?.fixed_offset(),
        )),
        FactValue::TextList(items) => {
            let items: Vec<Box<dyn Val + '_>> =
                items.iter().map(|s| Box::new(CelString::from(s.as_str())) as Box<dyn Val + '_>).collect();
            Box::new(CelList::from(items))
        }
        FactValue::Null => return None,
    })
}

/// A condition that does not compile, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionError {
    pub message: String,
    /// Line and column (in characters), both from 1.
    pub position: Option<(usize, usize)>,
}

impl fmt::Display for ConditionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, column)) => write!(f, "line {line}, column {column}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ConditionError {}

/// A compiled condition. Cloning shares the compiled program.
#[derive(Clone)]
pub struct Condition {
    inner: Arc<Compiled>,
}

struct Compiled {
    source: String,
    /// `None` for [`Condition::always`].
    program: Option<Program>,
    /// The program's expression as evaluated: field reads flattened ([`flatten_fields`]). Same shape
    /// and node ids as the program's, which keeps the source positions.
    expr: IdedExpr,
    /// The `var.field` paths the condition reads, sorted.
    inputs: Vec<String>,
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Condition").field(&self.inner.source).finish()
    }
}

/// Two conditions are equal when their source texts are.
impl PartialEq for Condition {
    fn eq(&self, other: &Self) -> bool {
        self.inner.source == other.inner.source && self.is_always() == other.is_always()
    }
}

/// The interpreter's environment: CEL's standard library, without the optional-value syntax.
fn env() -> &'static Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(Env::stdlib().with_optional_support(false)))
}

impl Condition {
    /// The condition of a flow without `when`: always true, reads nothing.
    pub fn always() -> Condition {
        Condition {
            inner: Arc::new(Compiled {
                source: "true".into(),
                program: None,
                expr: IdedExpr::default(),
                inputs: Vec::new(),
            }),
        }
    }

    /// Parses and checks `source` against `schema` (see the module documentation for what is checked).
    pub fn compile(source: &str, schema: &Schema) -> Result<Condition, ConditionError> {
        Self::compile_as(source, schema, true)
    }

    /// Like [`Condition::compile`] for an expression of any type (a `track_event` property): everything
    /// is checked but that the result is true or false. Evaluate it with [`Condition::value`].
    pub fn compile_value(source: &str, schema: &Schema) -> Result<Condition, ConditionError> {
        Self::compile_as(source, schema, false)
    }

    /// The value of an expression compiled with [`Condition::compile_value`] (or of a condition) as a
    /// fact: booleans, numbers, text, timestamps and lists of text; other CEL values as their text.
    pub fn value(&self, facts: &Facts) -> Result<FactValue, String> {
        if self.is_always() {
            return Ok(FactValue::Bool(true));
        }
        self.value_prepared(&facts.prepare())
    }

    /// [`Condition::value`] against facts prepared once ([`Facts::prepare`]).
    pub fn value_prepared(&self, prepared: &PreparedFacts<'_>) -> Result<FactValue, String> {
        if self.is_always() {
            return Ok(FactValue::Bool(true));
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            with_context(&prepared.0, |ctx| match Value::resolve_val(&self.inner.expr, ctx) {
                Ok(v) => Ok(match Value::try_from(&*v) {
                    Ok(Value::Bool(b)) => FactValue::Bool(b),
                    Ok(Value::Int(i)) => FactValue::Int(i),
                    Ok(Value::UInt(u)) => FactValue::Int(i64::try_from(u).unwrap_or(i64::MAX)),
                    Ok(Value::Float(d)) => FactValue::Double(d),
                    Ok(Value::String(s)) => FactValue::Text(s.to_string()),
                    Ok(Value::Null) => FactValue::Null,
                    Ok(Value::Timestamp(t)) => time::OffsetDateTime::from_unix_timestamp(t.timestamp())
                        .map(FactValue::Timestamp)
                        .unwrap_or(FactValue::Null),
                    Ok(Value::List(items)) => FactValue::TextList(
                        items
                            .iter()
                            .map(|i| match i {
                                Value::String(s) => s.to_string(),
                                other => show_value(other),
                            })
                            .collect(),
                    ),
                    Ok(other) => FactValue::Text(show_value(&other)),
                    Err(_) => FactValue::Text(show(&*v)),
                }),
                Err(e) => Err(self.runtime_message(&e)),
            })
        }));
        outcome.unwrap_or_else(|_| {
            Err("the expression could not be evaluated (the CEL interpreter failed)".into())
        })
    }

    fn compile_as(source: &str, schema: &Schema, want_bool: bool) -> Result<Condition, ConditionError> {
        if source.trim().is_empty() {
            return Err(ConditionError { message: "the condition is empty".into(), position: None });
        }
        if source.len() > MAX_SOURCE_BYTES {
            return Err(ConditionError {
                message: format!("the condition is longer than {MAX_SOURCE_BYTES} bytes"),
                position: None,
            });
        }
        check_nesting(source)?;
        let parsed =
            catch_unwind(AssertUnwindSafe(|| env().compile(source))).map_err(|_| ConditionError {
                message: "the condition could not be parsed (the CEL parser failed)".into(),
                position: None,
            })?;
        let program = parsed.map_err(|errors| syntax_error(source, &errors))?;
        let checker = Checker { schema, source, program: &program, want_bool };
        let inputs = checker.check()?;
        let mut expr = program.expression().clone();
        flatten_fields(&mut expr, &mut Vec::new());
        Ok(Condition {
            inner: Arc::new(Compiled { source: source.to_string(), program: Some(program), expr, inputs }),
        })
    }

    /// The source text.
    pub fn source(&self) -> &str {
        &self.inner.source
    }

    /// Whether this is [`Condition::always`].
    pub fn is_always(&self) -> bool {
        self.inner.program.is_none()
    }

    /// The `var.field` paths the condition reads (`has(var.field)` included), sorted.
    pub fn inputs(&self) -> Vec<String> {
        self.inner.inputs.clone()
    }

    /// [`Condition::inputs`] without a copy.
    pub fn input_paths(&self) -> &[String] {
        &self.inner.inputs
    }

    /// Evaluates the condition. For several conditions on the same facts, prepare the facts once
    /// ([`Facts::prepare`]) and use [`Condition::eval_prepared`].
    pub fn eval(&self, facts: &Facts) -> Result<bool, String> {
        if self.is_always() {
            return Ok(true);
        }
        self.eval_prepared(&facts.prepare())
    }

    /// Evaluates the condition against prepared facts. An error (a missing value read, an overflow, …)
    /// means the condition could not be decided for these facts.
    pub fn eval_prepared(&self, facts: &PreparedFacts<'_>) -> Result<bool, String> {
        if self.is_always() {
            return Ok(true);
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            with_context(&facts.0, |ctx| match Value::resolve_val(&self.inner.expr, ctx) {
                Ok(v) => match v.downcast_ref::<CelBool>() {
                    Some(b) => Ok(*b.inner()),
                    None => Err(format!("the condition gave {}, not true or false", type_name(&*v))),
                },
                Err(e) => Err(self.runtime_message(&e)),
            })
        }));
        outcome.unwrap_or_else(|_| {
            Err("the condition could not be evaluated (the CEL interpreter failed)".into())
        })
    }

    /// Evaluates the condition term by term (see the module documentation).
    pub fn explain(&self, facts: &Facts) -> Explanation {
        let Some(program) = &self.inner.program else {
            return Explanation { result: Ok(true), terms: Vec::new() };
        };
        let prepared = facts.prepare();
        let result = self.eval_prepared(&prepared);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            with_context(&prepared.0, |ctx| {
                // The terms' text from the program as parsed, their values from the expression as
                // evaluated: both have the same `&&` and `||` nodes.
                let (mut parsed, mut evaluated) = (Vec::new(), Vec::new());
                flatten_logic(program.expression(), &mut parsed);
                flatten_logic(&self.inner.expr, &mut evaluated);
                let spans = Spans { source: &self.inner.source, program };
                parsed
                    .into_iter()
                    .zip(evaluated)
                    .map(|(p, e)| self.term(p, e, &spans, ctx))
                    .collect::<Vec<_>>()
            })
        }));
        let terms = outcome.unwrap_or_else(|_| {
            vec![Term { text: self.inner.source.clone(), value: "error: the CEL interpreter failed".into() }]
        });
        Explanation { result, terms }
    }

    fn term(&self, parsed: &IdedExpr, leaf: &IdedExpr, spans: &Spans<'_>, ctx: &Context<'_, '_>) -> Term {
        let (start, end) = spans.span(parsed);
        let text = squash_whitespace(&self.inner.source[start..end]);
        let shown = |e: &IdedExpr| match Value::resolve_val(e, ctx) {
            Ok(v) => Ok(show(&*v)),
            Err(err) => Err(self.runtime_message(&err)),
        };
        let comparison = match &leaf.expr {
            Expr::Call(call) if call.target.is_none() && call.args.len() == 2 => {
                comparison_symbol(&call.func_name)
            }
            _ => None,
        };
        let value = match (comparison, &leaf.expr) {
            (Some(symbol), Expr::Call(call)) => {
                match (shown(&call.args[0]), shown(&call.args[1]), shown(leaf)) {
                    (Ok(lhs), Ok(rhs), Ok(result)) => format!("{lhs} {symbol} {rhs} → {result}"),
                    (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => format!("error: {e}"),
                }
            }
            _ => shown(leaf).unwrap_or_else(|e| format!("error: {e}")),
        };
        Term { text, value }
    }

    /// An evaluation error in a marketer's words.
    fn runtime_message(&self, e: &ExecutionError) -> String {
        let inputs = &self.inner.inputs;
        let path = match e {
            // A flattened field read (`customer.x`) finds no variable of that name.
            ExecutionError::UndeclaredReference(name) => inputs.iter().find(|p| *p == name.as_str()),
            // `customer["x"]` or a read the interpreter made on the variable's map.
            ExecutionError::NoSuchKey(key) => {
                inputs.iter().find(|p| p.split_once('.').is_some_and(|(_, f)| f == key.as_str()))
            }
            _ => None,
        };
        match path {
            Some(path) => format!("{path} has no value (test it first with has({path}))"),
            None => describe(e),
        }
    }
}

fn with_context<R>(bound: &Bound<'_>, f: impl FnOnce(&Context<'_, '_>) -> R) -> R {
    let mut ctx = Context::with_env(Arc::clone(env()));
    ctx.set_variable_resolver(bound);
    f(&ctx)
}

/// A condition evaluated term by term.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// The condition's value, as [`Condition::eval`] gives it.
    pub result: Result<bool, String>,
    /// The operands of `&&` and `||`, flattened, in source order. Each is evaluated on its own, even
    /// where the whole condition did not need it.
    pub terms: Vec<Term>,
}

/// One term of an [`Explanation`].
#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    /// The term's source text (whitespace runs with line breaks shown as one space).
    pub text: String,
    /// Its value (`true`, `false`, `error: …`); for a comparison both sides too: `72.4 >= 60.0 → true`.
    pub value: String,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for term in &self.terms {
            writeln!(f, "  {}: {}", term.text, term.value)?;
        }
        match &self.result {
            Ok(b) => write!(f, "  → {b}"),
            Err(e) => write!(f, "  → error: {e}"),
        }
    }
}

/// Rewrites each read of a field, `customer.orders_count` (or `customer["orders_count"]`), into the name
/// `customer.orders_count`, which [`Bound`] resolves with one lookup: the interpreter would otherwise
/// build the dotted name for every read and then look the field up in the variable's map. The value and
/// the errors are the same (CEL resolves a dotted name as a whole first); loop variables named like a
/// variable are left alone.
fn flatten_fields(e: &mut IdedExpr, bound: &mut Vec<String>) {
    let is_var =
        |name: &str, bound: &Vec<String>| var_index(name).is_some() && !bound.iter().any(|b| b == name);
    let path = match &e.expr {
        Expr::Select(s) if !s.test => match &s.operand.expr {
            Expr::Ident(var) if is_var(var, bound) => Some(format!("{var}.{}", s.field)),
            _ => None,
        },
        Expr::Call(call) if call.func_name == "_[_]" && call.target.is_none() => match call.args.as_slice() {
            [operand, key] => match (&operand.expr, &key.expr) {
                (Expr::Ident(var), Expr::Literal(LiteralValue::String(field))) if is_var(var, bound) => {
                    Some(format!("{var}.{}", field.inner()))
                }
                _ => None,
            },
            _ => None,
        },
        _ => None,
    };
    if let Some(path) = path {
        e.expr = Expr::Ident(path);
        return;
    }
    match &mut e.expr {
        Expr::Call(call) => {
            if let Some(target) = &mut call.target {
                flatten_fields(target, bound);
            }
            call.args.iter_mut().for_each(|a| flatten_fields(a, bound));
        }
        Expr::Comprehension(c) => {
            flatten_fields(&mut c.iter_range, bound);
            flatten_fields(&mut c.accu_init, bound);
            let scope = bound.len();
            bound.push(c.iter_var.clone());
            bound.extend(c.iter_var2.iter().cloned());
            bound.push(c.accu_var.clone());
            for part in [&mut c.loop_cond, &mut c.loop_step, &mut c.result] {
                flatten_fields(part, bound);
            }
            bound.truncate(scope);
        }
        Expr::List(list) => list.elements.iter_mut().for_each(|a| flatten_fields(a, bound)),
        Expr::Map(map) => map.entries.iter_mut().for_each(|entry| match &mut entry.expr {
            EntryExpr::MapEntry(m) => {
                flatten_fields(&mut m.key, bound);
                flatten_fields(&mut m.value, bound);
            }
            EntryExpr::StructField(f) => flatten_fields(&mut f.value, bound),
        }),
        Expr::Struct(st) => st.entries.iter_mut().for_each(|entry| match &mut entry.expr {
            EntryExpr::MapEntry(m) => {
                flatten_fields(&mut m.key, bound);
                flatten_fields(&mut m.value, bound);
            }
            EntryExpr::StructField(f) => flatten_fields(&mut f.value, bound),
        }),
        Expr::Select(s) => flatten_fields(&mut s.operand, bound),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
}

/// The operands of nested `&&` and `||`, in source order.
fn flatten_logic<'e>(e: &'e IdedExpr, out: &mut Vec<&'e IdedExpr>) {
    match &e.expr {
        Expr::Call(call)
            if call.target.is_none()
                && call.args.len() == 2
                && matches!(call.func_name.as_str(), "_&&_" | "_||_") =>
        {
            flatten_logic(&call.args[0], out);
            flatten_logic(&call.args[1], out);
        }
        _ => out.push(e),
    }
}

fn comparison_symbol(func: &str) -> Option<&'static str> {
    Some(match func {
        "_==_" => "==",
        "_!=_" => "!=",
        "_<_" => "<",
        "_<=_" => "<=",
        "_>_" => ">",
        "_>=_" => ">=",
        "@in" => "in",
        _ => return None,
    })
}

fn operator_symbol(func: &str) -> Option<&'static str> {
    comparison_symbol(func).or_else(|| {
        Some(match func {
            "_+_" | "add" => "+",
            "_-_" | "sub" => "-",
            "_*_" | "mul" => "*",
            "_/_" | "div" => "/",
            "_%_" | "rem" => "%",
            "-_" => "-",
            "!_" => "!",
            "_[_]" => "[]",
            "_&&_" => "&&",
            "_||_" => "||",
            "_?_:_" => "? :",
            _ => return None,
        })
    })
}

/// The CEL type name of a value.
fn type_name(v: &dyn Val) -> String {
    plain_type_name(v.get_type().name())
}

/// CEL's names for the well-known types, as a marketer reads them.
fn plain_type_name(name: &str) -> String {
    match name {
        "google.protobuf.Timestamp" => "timestamp".into(),
        "google.protobuf.Duration" => "duration".into(),
        other => other.into(),
    }
}

fn value_type_name(v: &Value) -> String {
    match v {
        Value::Float(_) => "double".into(),
        other => other.type_of().to_string(),
    }
}

/// A value as a term shows it.
fn show(v: &dyn Val) -> String {
    match Value::try_from(v) {
        Ok(value) => show_value(&value),
        Err(_) => format!("{v:?}"),
    }
}

fn show_value(v: &Value) -> String {
    match v {
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => format!("{u}u"),
        Value::Float(d) => show_double(*d),
        Value::String(s) => format!("{:?}", s.as_str()),
        Value::Null => "null".into(),
        Value::Timestamp(t) => t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        Value::Duration(d) => format!("duration(\"{}s\")", d.num_milliseconds() as f64 / 1000.0),
        Value::List(items) => {
            const SHOWN: usize = 10;
            let mut parts: Vec<String> = items.iter().take(SHOWN).map(show_value).collect();
            if items.len() > SHOWN {
                parts.push(format!("… {} more", items.len() - SHOWN));
            }
            format!("[{}]", parts.join(", "))
        }
        Value::Map(m) => format!("{{{} fields}}", m.map.len()),
        other => format!("{other:?}"),
    }
}

/// A double with a decimal point even when whole (`60.0`), as CEL writes double literals.
fn show_double(d: f64) -> String {
    if d.is_finite() && d.fract() == 0.0 && d.abs() < 1e16 { format!("{d:.1}") } else { format!("{d}") }
}

/// Whitespace runs that contain a line break become one space.
fn squash_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    for c in text.trim().chars() {
        if c.is_whitespace() {
            run.push(c);
        } else {
            if !run.is_empty() {
                out.push_str(if run.contains('\n') { " " } else { &run });
                run.clear();
            }
            out.push(c);
        }
    }
    out
}

/// An execution error in plain words (type errors included).
fn describe(e: &ExecutionError) -> String {
    match e {
        ExecutionError::NoSuchOverload(o) => {
            let types: Vec<String> = o.argument_types().iter().map(|t| plain_type_name(t)).collect();
            let hint = mixed_number_hint(o.function(), types.iter().map(String::as_str));
            match (operator_symbol(o.function()), types.as_slice()) {
                (None, [a, _]) if o.function() == "_._" => format!("a {a} has no fields"),
                (Some(op), [a, b]) => format!("`{op}` does not apply to {a} and {b}{hint}"),
                (Some(op), [a]) => format!("`{op}` does not apply to {a}"),
                _ if o.is_member_function() && !types.is_empty() => {
                    format!(
                        "`{}` cannot be called on {} with ({})",
                        o.function(),
                        types[0],
                        types[1..].join(", ")
                    )
                }
                _ => format!("`{}` does not take ({})", o.function(), types.join(", ")),
            }
        }
        ExecutionError::UnsupportedBinaryOperator(op, a, b) => {
            let (a, b) = (value_type_name(a), value_type_name(b));
            let hint = mixed_number_hint(op, [a.as_str(), b.as_str()].into_iter());
            format!("`{}` does not apply to {a} and {b}{hint}", operator_symbol(op).unwrap_or(op))
        }
        ExecutionError::ValuesNotComparable(a, b) => {
            format!("{} cannot be compared with {}", value_type_name(a), value_type_name(b))
        }
        ExecutionError::UndeclaredReference(name) => format!("unknown function or name `{name}`"),
        ExecutionError::UnexpectedType { got, want } => format!("expected {want}, got {got}"),
        ExecutionError::NoSuchKey(key) => format!("no field `{key}`"),
        ExecutionError::FunctionError { function, message } => format!("{function}(): {message}"),
        ExecutionError::UnsupportedIndex(a, b) => {
            format!("cannot index {} with {}", value_type_name(b), value_type_name(a))
        }
        other => other.to_string(),
    }
}

fn mixed_number_hint<'a>(func: &str, mut types: impl Iterator<Item = &'a str>) -> &'static str {
    let arithmetic =
        matches!(func, "_+_" | "_-_" | "_*_" | "_/_" | "_%_" | "add" | "sub" | "mul" | "div" | "rem");
    let (a, b) = (types.next(), types.next());
    let mixed = matches!((a, b), (Some("int"), Some("double")) | (Some("double"), Some("int")));
    if arithmetic && mixed {
        " (arithmetic does not mix int and double: write 2.0 for a double literal, or convert with double(...))"
    } else {
        ""
    }
}

/// Is this execution error about types (always wrong), rather than about the values at hand?
fn is_type_error(e: &ExecutionError) -> bool {
    matches!(
        e,
        ExecutionError::NoSuchOverload(_)
            | ExecutionError::UnsupportedBinaryOperator(..)
            | ExecutionError::ValuesNotComparable(..)
            | ExecutionError::UnexpectedType { .. }
            | ExecutionError::UnsupportedTargetType { .. }
            | ExecutionError::NotSupportedAsMethod { .. }
            | ExecutionError::UnsupportedIndex(..)
            | ExecutionError::UndeclaredReference(_)
            | ExecutionError::InvalidArgumentCount { .. }
            | ExecutionError::UnsupportedKeyType(_)
            | ExecutionError::MissingArgumentOrTarget
    )
}

/// Rejects brackets nested deeper than [`MAX_NESTING`] before the parser (which recurses) sees them.
fn check_nesting(source: &str) -> Result<(), ConditionError> {
    let mut depth = 0usize;
    let mut scanner = Scanner::new(source);
    while let Some((at, c)) = scanner.next_code_char() {
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(ConditionError {
                        message: format!("the condition nests brackets more than {MAX_NESTING} deep"),
                        position: Some(line_col(source, at)),
                    });
                }
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Walks source text, skipping string literals.
struct Scanner<'s> {
    source: &'s str,
    at: usize,
}

impl<'s> Scanner<'s> {
    fn new(source: &'s str) -> Self {
        Scanner { source, at: 0 }
    }

    /// The next character outside string literals, with its byte offset.
    fn next_code_char(&mut self) -> Option<(usize, char)> {
        loop {
            let c = self.source[self.at..].chars().next()?;
            let at = self.at;
            if c == '"' || c == '\'' {
                self.skip_string(at, c);
                continue;
            }
            self.at += c.len_utf8();
            return Some((at, c));
        }
    }

    /// Skips the string literal whose quote is at `at` (raw when prefixed with r or R).
    fn skip_string(&mut self, at: usize, quote: char) {
        let before = &self.source[..at];
        let raw = before.ends_with(['r', 'R']);
        let rest = &self.source[at..];
        let triple: String = std::iter::repeat_n(quote, 3).collect();
        let (delimiter, mut i) =
            if rest.starts_with(&triple) { (triple.as_str(), 3) } else { (&rest[..1], 1) };
        while i < rest.len() {
            if rest[i..].starts_with(delimiter) {
                self.at = at + i + delimiter.len();
                return;
            }
            let c = rest[i..].chars().next().unwrap_or(' ');
            if c == '\\' && !raw {
                i += 1;
                i += rest[i..].chars().next().map_or(0, char::len_utf8);
            } else {
                i += c.len_utf8();
            }
        }
        self.at = self.source.len();
    }
}

/// Line and column (in characters, from 1) of a byte offset.
fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, source[line_start..offset].chars().count() + 1)
}

/// The first syntax error, positioned.
fn syntax_error(source: &str, errors: &cel::ParseErrors) -> ConditionError {
    let Some(first) = errors.errors.first() else {
        return ConditionError { message: "syntax error".into(), position: None };
    };
    let msg = first.msg.strip_prefix("Syntax error: ").unwrap_or(&first.msg);
    if msg.contains("Recursion limit") {
        return ConditionError { message: "the condition is nested too deeply".into(), position: None };
    }
    let quoted = |s: &str| {
        let s = s.trim_start_matches('\'');
        s.rsplit_once('\'').map_or(s, |(inner, _)| inner).to_string()
    };
    let message = if let Some(rest) = msg.strip_prefix("mismatched input '<EOF>'") {
        let _ = rest;
        "the condition ends too early".to_string()
    } else if let Some(rest) = msg.strip_prefix("mismatched input ").or(msg.strip_prefix("extraneous input "))
    {
        let token = quoted(rest.split(" expecting").next().unwrap_or(rest));
        if token == "<EOF>" { "the condition ends too early".into() } else { format!("unexpected `{token}`") }
    } else if let Some(rest) = msg.strip_prefix("token recognition error at: ") {
        let text = quoted(rest);
        match text.chars().next() {
            Some('"' | '\'') => "a string is not closed".into(),
            Some(c) => format!("unexpected character `{c}`"),
            None => "unexpected character".into(),
        }
    } else if let Some(rest) = msg.strip_prefix("no viable alternative at input ") {
        format!("cannot read `{}`", quoted(rest))
    } else if let Some(rest) = msg.strip_prefix("missing ") {
        let token = quoted(rest.split(" at ").next().unwrap_or(rest));
        format!("missing `{token}`")
    } else {
        msg.to_string()
    };
    let (line, column) = first.pos;
    let position = (line >= 1 && column >= 1).then(|| {
        let line = line as usize;
        // The parser counts columns in characters from 1; clamp to the line's end.
        let len = source.lines().nth(line - 1).map_or(0, |l| l.chars().count());
        (line, (column as usize).min(len + 1))
    });
    ConditionError { message: format!("syntax error: {message}"), position }
}

/// Source spans of parsed expressions. The parser records one token per node (an operator, the `(` of
/// a call, an identifier, a literal); a sub-expression's text runs from its first to its last token,
/// widened to the name of a call that starts it and to the brackets it leaves open.
struct Spans<'a> {
    source: &'a str,
    program: &'a Program,
}

impl Spans<'_> {
    fn token(&self, e: &IdedExpr) -> Option<(usize, usize)> {
        self.program.source_info().offset_for(e.id).map(|(start, stop)| (start as usize, stop as usize + 1))
    }

    /// Byte range of `e`'s source text.
    fn span(&self, e: &IdedExpr) -> (usize, usize) {
        let mut range: Option<(usize, usize)> = None;
        visit(e, &mut |node| {
            if let Some((s, mut t)) = self.token(node) {
                // A field selection's token is its `.`: take in the field's name after it.
                if let Expr::Select(select) = &node.expr
                    && self.source[s..].starts_with('.')
                {
                    let after = &self.source[t..];
                    let gap = after.len() - after.trim_start().len();
                    if after.trim_start().starts_with(select.field.as_str()) {
                        t += gap + select.field.len();
                    }
                }
                range = Some(range.map_or((s, t), |(a, b)| (a.min(s), b.max(t))));
            }
        });
        let Some((start, end)) = range else {
            return (0, self.source.len());
        };
        let start = self.call_name_start(start);
        (start, self.close_brackets(start, end.min(self.source.len())))
    }

    /// The position of `e` for an error: its own token, or for a call the start of the function's name.
    fn position(&self, e: &IdedExpr) -> Option<(usize, usize)> {
        let (start, _) = self.token(e)?;
        Some(line_col(self.source, self.call_name_start(start)))
    }

    /// When `start` is the `(` of a call, the start of the function's name before it.
    fn call_name_start(&self, start: usize) -> usize {
        if !self.source[start..].starts_with('(') {
            return start;
        }
        let before = self.source[..start].trim_end();
        let name_len = before.chars().rev().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').count();
        if name_len == 0 { start } else { before.len() - name_len }
    }

    /// Extends `end` past the closing brackets of those opened in `start..end`.
    fn close_brackets(&self, start: usize, end: usize) -> usize {
        let mut open = 0usize;
        let mut scanner = Scanner::new(self.source);
        scanner.at = start;
        while let Some((at, c)) = scanner.next_code_char() {
            if at >= end && open == 0 {
                break;
            }
            match c {
                '(' | '[' | '{' => open += 1,
                ')' | ']' | '}' if open > 0 => {
                    open -= 1;
                    if at >= end && open == 0 {
                        return at + 1;
                    }
                }
                _ => {}
            }
        }
        end
    }
}

/// Calls `f` on `e` and every expression inside it.
fn visit<'e>(e: &'e IdedExpr, f: &mut impl FnMut(&'e IdedExpr)) {
    f(e);
    if let Expr::Comprehension(c) = &e.expr {
        for part in [&c.loop_cond, &c.loop_step, &c.result] {
            visit(part, f);
        }
    }
    outer_children(e).into_iter().for_each(|c| visit(c, f));
}

/// The direct children of `e` evaluated in `e`'s own scope (a loop's body is not: it reads the loop's
/// variables).
fn outer_children(e: &IdedExpr) -> Vec<&IdedExpr> {
    let mut out = Vec::new();
    match &e.expr {
        Expr::Call(call) => {
            out.extend(call.target.as_deref());
            out.extend(call.args.iter());
        }
        Expr::Comprehension(c) => out.extend([&c.iter_range, &c.accu_init]),
        Expr::List(list) => out.extend(list.elements.iter()),
        Expr::Map(_) | Expr::Struct(_) => out.extend(map_entries(e).into_iter().flatten()),
        Expr::Select(s) => out.push(&s.operand),
        _ => {}
    }
    out
}

fn map_entries(e: &IdedExpr) -> Vec<Vec<&IdedExpr>> {
    let entries = match &e.expr {
        Expr::Map(map) => &map.entries,
        Expr::Struct(s) => &s.entries,
        _ => return Vec::new(),
    };
    entries
        .iter()
        .map(|entry| match &entry.expr {
            EntryExpr::MapEntry(m) => vec![&m.key, &m.value],
            EntryExpr::StructField(s) => vec![&s.value],
        })
        .collect()
}

/// Does `e` read any of the variables, or a loop's? (Otherwise it evaluates the same on every event.)
/// Every name other than a type's is one of those once the names are checked.
fn reads_facts(e: &IdedExpr) -> bool {
    let mut reads = false;
    visit(e, &mut |node| {
        if let Expr::Ident(name) = &node.expr {
            reads |= !TYPE_NAMES.contains(&name.as_str());
        }
    });
    reads
}

/// The checks of [`Condition::compile`] on a parsed program.
struct Checker<'a> {
    schema: &'a Schema,
    source: &'a str,
    program: &'a Program,
    /// A condition must give true or false; a value expression (an event property) anything.
    want_bool: bool,
}

impl Checker<'_> {
    fn spans(&self) -> Spans<'_> {
        Spans { source: self.source, program: self.program }
    }

    fn error(&self, e: &IdedExpr, message: String) -> ConditionError {
        ConditionError { message, position: self.spans().position(e) }
    }

    /// Names, bounds and types; returns the inputs.
    fn check(&self) -> Result<Vec<String>, ConditionError> {
        let root = self.program.expression();
        let mut inputs = BTreeSet::new();
        // Depth first: the other walks recurse as deep as the expression goes.
        self.depth(root, 0, 0)?;
        self.names(root, &mut Vec::new(), &mut inputs)?;
        let facts = self.schema.probe_facts();
        let prepared = facts.prepare();
        catch_unwind(AssertUnwindSafe(|| {
            with_context(&prepared.0, |ctx| {
                self.types(root, ctx)?;
                if self.want_bool { self.gives_bool(root, ctx) } else { Ok(()) }
            })
        }))
        .map_err(|_| ConditionError {
            message: "the condition could not be checked (the CEL interpreter failed)".into(),
            position: None,
        })??;
        Ok(inputs.into_iter().collect())
    }

    /// The condition's value is a bool: on the sample facts, and whichever branch a `? :` takes.
    fn gives_bool(&self, e: &IdedExpr, ctx: &Context<'_, '_>) -> Result<(), ConditionError> {
        if let Expr::Call(call) = &e.expr
            && call.target.is_none()
            && call.func_name == "_?_:_"
            && let [_, then, otherwise] = call.args.as_slice()
        {
            self.gives_bool(then, ctx)?;
            return self.gives_bool(otherwise, ctx);
        }
        match Value::resolve_val(e, ctx).map(|v| Value::try_from(&*v)) {
            Ok(Ok(Value::Bool(_))) | Err(_) | Ok(Err(_)) => Ok(()),
            Ok(Ok(value)) => {
                let (start, _) = self.spans().span(e);
                Err(ConditionError {
                    message: format!("the condition must be true or false, not {}", value_type_name(&value)),
                    position: Some(line_col(self.source, start)),
                })
            }
        }
    }

    /// Every name is a variable's field, a loop variable or a type; collects the fields read.
    fn names(
        &self,
        e: &IdedExpr,
        bound: &mut Vec<String>,
        inputs: &mut BTreeSet<String>,
    ) -> Result<(), ConditionError> {
        let is_var =
            |name: &str, bound: &Vec<String>| var_index(name).is_some() && !bound.iter().any(|b| b == name);
        match &e.expr {
            Expr::Ident(name) if bound.iter().any(|b| b == name) || TYPE_NAMES.contains(&name.as_str()) => {
                Ok(())
            }
            Expr::Ident(name) if var_index(name).is_some() => {
                let example = self.schema.fields(name).next().map_or("field".into(), |(f, _)| f.to_string());
                Err(self.error(e, format!("use a field of `{name}`, e.g. `{name}.{example}`")))
            }
            Expr::Ident(name) => {
                let known = VARIABLES.iter().copied();
                let hint =
                    suggestion(name, known).map_or(String::new(), |s| format!(": did you mean `{s}`?"));
                Err(self.error(
                    e,
                    format!("unknown variable `{name}`{hint} (the variables are event, customer and scores)"),
                ))
            }
            Expr::Select(s) => match &s.operand.expr {
                Expr::Ident(var) if is_var(var, bound) => self.field(&s.operand, var, &s.field, inputs),
                _ => self.names(&s.operand, bound, inputs),
            },
            Expr::Call(call) => {
                if call.func_name == "_[_]"
                    && call.target.is_none()
                    && let [operand, key] = call.args.as_slice()
                    && let (Expr::Ident(var), Expr::Literal(LiteralValue::String(field))) =
                        (&operand.expr, &key.expr)
                    && is_var(var, bound)
                {
                    return self.field(operand, var, field.inner(), inputs);
                }
                if let Some(target) = &call.target {
                    self.names(target, bound, inputs)?;
                }
                call.args.iter().try_for_each(|a| self.names(a, bound, inputs))
            }
            Expr::Comprehension(c) => {
                self.names(&c.iter_range, bound, inputs)?;
                self.names(&c.accu_init, bound, inputs)?;
                let scope = bound.len();
                bound.push(c.iter_var.clone());
                bound.extend(c.iter_var2.iter().cloned());
                bound.push(c.accu_var.clone());
                let body = [&c.loop_cond, &c.loop_step, &c.result]
                    .into_iter()
                    .try_for_each(|p| self.names(p, bound, inputs));
                bound.truncate(scope);
                body
            }
            Expr::List(list) => list.elements.iter().try_for_each(|a| self.names(a, bound, inputs)),
            Expr::Map(_) | Expr::Struct(_) => {
                map_entries(e).into_iter().flatten().try_for_each(|a| self.names(a, bound, inputs))
            }
            Expr::Literal(_) | Expr::Unspecified => Ok(()),
        }
    }

    fn field(
        &self,
        at: &IdedExpr,
        var: &str,
        field: &str,
        inputs: &mut BTreeSet<String>,
    ) -> Result<(), ConditionError> {
        if self.schema.field(var, field).is_some() {
            inputs.insert(format!("{var}.{field}"));
            return Ok(());
        }
        let fields: Vec<&str> = self.schema.fields(var).map(|(f, _)| f).collect();
        let message = match suggestion(field, fields.iter().copied()) {
            Some(s) => format!("unknown field `{var}.{field}`: did you mean `{var}.{s}`?"),
            None if fields.is_empty() => format!("unknown field `{var}.{field}` (`{var}` has no fields)"),
            None => format!("unknown field `{var}.{field}` (`{var}` has {})", fields.join(", ")),
        };
        Err(self.error(at, message))
    }

    /// Bounds the expression's depth and its loops' nesting.
    fn depth(&self, e: &IdedExpr, depth: usize, loops: usize) -> Result<(), ConditionError> {
        if depth >= MAX_DEPTH {
            return Err(self.error(e, "the condition is nested too deeply".into()));
        }
        if let Expr::Comprehension(c) = &e.expr {
            if loops + 1 > MAX_LOOP_NESTING {
                return Err(self.error(e, format!("loops nest at most {MAX_LOOP_NESTING} deep")));
            }
            for part in [&c.loop_cond, &c.loop_step, &c.result] {
                self.depth(part, depth + 1, loops + 1)?;
            }
        }
        outer_children(e).into_iter().try_for_each(|c| self.depth(c, depth + 1, loops))
    }

    /// Evaluates `e` and each of its parts (innermost first) against sample facts: an error about types,
    /// or any error of a part that reads no fact, is a configuration error. Returns `e`'s sample value
    /// (`None` when it failed for the sample values only).
    fn types(&self, e: &IdedExpr, ctx: &Context<'_, '_>) -> Result<Option<Value>, ConditionError> {
        let children =
            outer_children(e).into_iter().map(|c| self.types(c, ctx)).collect::<Result<Vec<_>, _>>()?;
        // A loop's body, with its variable set to the range's first element and its accumulator to the
        // initial value, so that its parts are checked like the rest.
        if let Expr::Comprehension(c) = &e.expr
            && c.iter_var2.is_none()
            && let [Some(Value::List(items)), Some(init)] = children.as_slice()
            && let Some(first) = items.first()
        {
            let mut scope = ctx.new_inner_scope();
            scope.add_variable_from_value(c.iter_var.as_str(), first.clone());
            scope.add_variable_from_value(c.accu_var.as_str(), init.clone());
            for part in [&c.loop_cond, &c.loop_step, &c.result] {
                self.types(part, &scope)?;
            }
        }
        if let Expr::Call(call) = &e.expr
            && call.target.is_none()
            && let [Some(a), Some(b)] = children.as_slice()
        {
            let (ta, tb) = (value_type_name(a), value_type_name(b));
            let null_literal = call.args.iter().any(|a| matches!(a.expr, Expr::Literal(LiteralValue::Null)));
            match call.func_name.as_str() {
                "_==_" | "_!=_" if null_literal => {
                    return Err(self.error(
                        e,
                        "no field is ever null: a missing value is absent, test it with has(var.field)"
                            .into(),
                    ));
                }
                "_==_" | "_!=_" if !comparable(&ta, &tb) => {
                    let (symbol, always) =
                        if call.func_name == "_==_" { ("==", "false") } else { ("!=", "true") };
                    return Err(self.error(e, format!("`{symbol}` between {ta} and {tb} is always {always}")));
                }
                "@in" => {
                    if let Value::List(items) = b
                        && let Some(first) = items.first()
                        && !comparable(&ta, &value_type_name(first))
                    {
                        return Err(self.error(
                            e,
                            format!(
                                "`in` looks for {ta} in a list of {}: always false",
                                value_type_name(first)
                            ),
                        ));
                    }
                }
                _ => {}
            }
        }
        match Value::resolve_val(e, ctx) {
            Ok(v) => Ok(Value::try_from(&*v).ok()),
            Err(err) if is_type_error(&err) || !reads_facts(e) => Err(self.error(e, describe(&err))),
            Err(_) => Ok(None),
        }
    }
}

/// Can values of these two types be equal?
fn comparable(a: &str, b: &str) -> bool {
    let numeric = |t: &str| matches!(t, "int" | "uint" | "double");
    a == b || (numeric(a) && numeric(b)) || a == "null" || b == "null"
}

/// The closest of `candidates` to `name`, if close enough to be a typo.
fn suggestion<'c>(name: &str, candidates: impl Iterator<Item = &'c str>) -> Option<&'c str> {
    candidates
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 5))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1).min(row[j] + 1).min(prev + usize::from(ca != *cb));
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn compile(source: &str) -> Result<Condition, ConditionError> {
        Condition::compile(source, &Schema::flows_default())
    }

    fn err(source: &str) -> ConditionError {
        compile(source).expect_err(source)
    }

    /// A repeat customer at risk: 3 orders, last one 120 days ago, tagged vip.
    fn facts() -> Facts {
        let mut f = Facts::default();
        f.event.insert("kind".into(), FactValue::Text("order_placed".into()));
        f.event.insert("value".into(), FactValue::Double(80.0));
        f.event.insert("currency".into(), FactValue::Text("EUR".into()));
        f.customer.insert("id".into(), FactValue::Text("shopify:880012".into()));
        f.customer.insert("email_consent".into(), FactValue::Bool(true));
        f.customer.insert("sms_consent".into(), FactValue::Bool(false));
        f.customer.insert("orders_count".into(), FactValue::Int(3));
        f.customer.insert("total_spent".into(), FactValue::Double(240.0));
        f.customer.insert("aov".into(), FactValue::Double(80.0));
        f.customer.insert("first_order_at".into(), FactValue::Timestamp(datetime!(2025-03-01 10:00 UTC)));
        f.customer.insert("last_order_at".into(), FactValue::Timestamp(datetime!(2025-08-05 09:30 UTC)));
        f.customer.insert("days_since_last_order".into(), FactValue::Double(120.0));
        f.customer.insert("tags".into(), FactValue::TextList(vec!["vip".into(), "newsletter".into()]));
        f.customer.insert("open_checkout_value".into(), FactValue::Null);
        f.scores.insert("churn_risk".into(), FactValue::Double(72.4));
        f.scores.insert("p_alive".into(), FactValue::Double(0.31));
        f.scores.insert("segment".into(), FactValue::Text("at_risk".into()));
        f.scores.insert("model_version".into(), FactValue::Text("btyd-7".into()));
        f
    }

    /// A customer without orders: the order dates are missing.
    fn new_customer() -> Facts {
        let mut f = facts();
        f.customer.insert("orders_count".into(), FactValue::Int(0));
        for field in ["first_order_at", "last_order_at", "days_since_last_order"] {
            f.customer.insert(field.into(), FactValue::Null);
        }
        f
    }

    fn eval(source: &str, facts: &Facts) -> Result<bool, String> {
        compile(source).unwrap_or_else(|e| panic!("{source}: {e}")).eval(facts)
    }

    #[test]
    fn realistic_conditions_compile_and_list_their_inputs() {
        let c = compile(
            "scores.churn_risk >= 60.0 && customer.email_consent\n  && !(\"wholesale\" in customer.tags) && has(customer.last_order_at)",
        )
        .unwrap();
        assert_eq!(
            c.inputs(),
            ["customer.email_consent", "customer.last_order_at", "customer.tags", "scores.churn_risk"]
        );
        assert_eq!(c.source().lines().count(), 2);
        for source in [
            "event.kind == \"checkout_abandoned\" && event.value > 50",
            "customer.orders_count >= 2 && customer.total_spent / double(customer.orders_count) > 40.0",
            "scores.segment in [\"at_risk\", \"hibernating\"] || scores.p_alive < 0.3",
            "customer.tags.exists(t, t.startsWith(\"b2b\")) ? scores.predicted_clv > 500.0 : true",
            "size(event.product_ids) > 0 && customer[\"sms_consent\"]",
            "customer.first_order_at > timestamp(\"2025-01-01T00:00:00Z\")",
            "customer.last_order_at < timestamp(\"2026-01-01T00:00:00Z\") - duration(\"720h\")",
            "type(scores.churn_risk) == double",
        ] {
            compile(source).unwrap_or_else(|e| panic!("{source}: {e}"));
        }
        assert_eq!(
            compile("customer.tags.all(t, t != customer.id)").unwrap().inputs(),
            ["customer.id", "customer.tags"]
        );
    }

    #[test]
    fn a_syntax_error_is_positioned_in_a_multi_line_condition() {
        let e = err("scores.churn_risk >= 60.0\n  && customer.orders_count >= 2)");
        assert_eq!(e.position, Some((2, 32)), "{e}");
        assert_eq!(e.to_string(), "line 2, column 32: syntax error: unexpected `)`");

        let e = err("customer.email_consent &&\n  scores.churn_risk >=");
        assert_eq!(e.message, "syntax error: the condition ends too early");
        assert_eq!(e.position.map(|p| p.0), Some(2));

        let e = err("customer.email_consent &&\n  \"été\" == customer.id &&& true");
        assert_eq!(e.position, Some((2, 26)), "columns count characters: {e}");
        assert!(e.message.contains("unexpected character `&`"), "{e}");

        let e = err("customer.id == \"abc");
        assert!(e.message.contains("not closed"), "{e}");
        assert!(err("").message.contains("empty"));
    }

    #[test]
    fn an_unknown_variable_is_named_with_a_suggestion() {
        let e = err("cutomer.orders_count > 2");
        assert_eq!(e.position, Some((1, 1)));
        assert!(e.message.starts_with("unknown variable `cutomer`: did you mean `customer`?"), "{e}");
        let e = err("customer.orders_count > 2 && order.value > 3.0");
        assert_eq!(e.position, Some((1, 30)));
        assert!(e.message.contains("the variables are event, customer and scores"), "{e}");
    }

    #[test]
    fn an_unknown_field_is_named_with_a_suggestion() {
        let e = err("customer.email_consent &&\n customer.order_count >= 2");
        assert_eq!(e.message, "unknown field `customer.order_count`: did you mean `customer.orders_count`?");
        assert_eq!(e.position, Some((2, 2)));
        let e = err("has(scores.zzz)");
        assert!(
            e.message
                .starts_with("unknown field `scores.zzz` (`scores` has abandon_propensity, best_channel,"),
            "{e}"
        );
        let e = err("customer[\"favourite_color\"] == \"red\"");
        assert!(e.message.starts_with("unknown field `customer.favourite_color`"), "{e}");
        let e = err("customer == 1");
        assert!(e.message.starts_with("use a field of `customer`"), "{e}");
        let e = err("nosuchfn(customer.orders_count)");
        assert_eq!(e.message, "unknown function or name `nosuchfn`");
        assert_eq!(e.position, Some((1, 1)));
    }

    #[test]
    fn a_type_error_is_found_at_load_with_its_operator() {
        let e = err("customer.orders_count >= \"two\"");
        assert_eq!(e.message, "`>=` does not apply to int and string");
        assert_eq!(e.position, Some((1, 23)));
        let e = err("customer.total_spent / customer.orders_count > 50.0");
        assert!(
            e.message.starts_with("`/` does not apply to double and int (arithmetic does not mix"),
            "{e}"
        );
        let e = err("customer.id.startsWith(3)");
        assert!(e.message.contains("startsWith"), "{e}");
        let e = err("customer.tags.exists(t, t.id == \"vip\")");
        assert_eq!(e.message, "a string has no fields");
        // Numbers of both kinds compare.
        assert_eq!(eval("customer.total_spent > 100 && customer.orders_count < 3.5", &facts()), Ok(true));
    }

    #[test]
    fn a_type_error_hidden_by_short_circuiting_is_found() {
        let e = err("false && customer.tags >= 3");
        assert_eq!(e.message, "`>=` does not apply to list and int");
        assert_eq!(e.position, Some((1, 24)));
        assert!(err("true || scores.segment > 1").message.contains("string and int"));
        assert!(err("customer.email_consent ? true : customer.id - 1 > 0").message.contains("`-`"));
        assert!(err("customer.tags.exists(t, false && t > 1)").message.contains("string and int"));
    }

    #[test]
    fn equality_between_different_types_is_an_error() {
        let e = err("customer.orders_count == \"3\"");
        assert_eq!(e.message, "`==` between int and string is always false");
        assert!(err("scores.segment != 1").message.ends_with("always true"));
        assert!(err("3 in customer.tags").message.contains("list of string"));
        compile("customer.orders_count == 3.0 && scores.segment != \"x\"").unwrap();
    }

    #[test]
    fn the_result_must_be_a_bool() {
        let e = err("customer.orders_count + 1");
        assert_eq!(e.message, "the condition must be true or false, not int");
        assert_eq!(e.position, Some((1, 1)));
        assert!(err("customer.tags").message.ends_with("not list"));
        let e = err("has(customer.last_order_at) ? customer.days_since_last_order > 30.0\n  : 3");
        assert_eq!(e.message, "the condition must be true or false, not int");
        assert_eq!(e.position, Some((2, 5)));
    }

    #[test]
    fn a_part_that_always_fails_is_an_error() {
        let e = err("customer.last_order_at > timestamp(\"yesterday\")");
        assert!(e.message.starts_with("timestamp(): "), "{e}");
        assert_eq!(e.position, Some((1, 26)));
        assert!(err("duration(\"7d\") > duration(\"1h\")").message.starts_with("duration(): "));
        assert!(err("customer.orders_count > 1 / 0").message.contains("Division by zero"));
    }

    #[test]
    fn evaluation_on_facts() {
        let f = facts();
        assert_eq!(eval("scores.churn_risk >= 60.0 && customer.email_consent", &f), Ok(true));
        assert_eq!(eval("scores.churn_risk >= 80.0 || customer.sms_consent", &f), Ok(false));
        assert_eq!(eval("event.kind == \"order_placed\" && event.value >= 80.0", &f), Ok(true));
        assert_eq!(eval("scores.segment in [\"at_risk\", \"hibernating\"]", &f), Ok(true));
        assert_eq!(
            eval("customer.total_spent / double(customer.orders_count) == customer.aov", &f),
            Ok(true)
        );
        assert_eq!(Condition::always().eval(&f), Ok(true));
        assert!(Condition::always().is_always() && Condition::always().inputs().is_empty());

        // Prepared once, evaluated by many.
        let prepared = f.prepare();
        let conditions: Vec<Condition> = ["customer.orders_count > 2", "customer.orders_count > 3"]
            .into_iter()
            .map(|s| compile(s).unwrap())
            .collect();
        let results: Vec<_> = conditions.iter().map(|c| c.eval_prepared(&prepared)).collect();
        assert_eq!(results, [Ok(true), Ok(false)]);
    }

    #[test]
    fn timestamps_compare_with_timestamp_literals_and_durations() {
        let f = facts();
        assert_eq!(eval("customer.last_order_at < timestamp(\"2026-01-01T00:00:00Z\")", &f), Ok(true));
        assert_eq!(eval("customer.first_order_at >= timestamp(\"2025-03-01T10:00:00+00:00\")", &f), Ok(true));
        assert_eq!(
            eval("customer.last_order_at - customer.first_order_at > duration(\"2400h\")", &f),
            Ok(true)
        );
        assert_eq!(
            eval("customer.last_order_at.getDayOfWeek() == 2", &f),
            Ok(true),
            "2025-08-05 is a Tuesday"
        );
        let e = err("customer.last_order_at > \"2025-01-01\"");
        assert_eq!(e.message, "`>` does not apply to timestamp and string");
    }

    #[test]
    fn lists_of_strings() {
        let f = facts();
        assert_eq!(eval("\"vip\" in customer.tags", &f), Ok(true));
        assert_eq!(eval("\"wholesale\" in customer.tags", &f), Ok(false));
        assert_eq!(
            eval("size(customer.tags) == 2 && customer.tags.exists(t, t.startsWith(\"news\"))", &f),
            Ok(true)
        );
        assert_eq!(
            eval("size(event.product_ids) == 0", &f),
            Err("event.product_ids has no value (test it first with has(event.product_ids))".into())
        );
    }

    #[test]
    fn a_missing_value_is_absent() {
        let f = new_customer();
        let read = "customer.days_since_last_order > 90.0";
        assert_eq!(
            eval(read, &f),
            Err("customer.days_since_last_order has no value (test it first with has(customer.days_since_last_order))".into())
        );
        assert_eq!(eval("has(customer.last_order_at)", &f), Ok(false));
        assert!(err("customer.last_order_at == null").message.contains("test it with has(var.field)"));
        assert_eq!(eval("has(customer.last_order_at)", &facts()), Ok(true));
        // The guard works on either side of && and ||.
        assert_eq!(eval(&format!("has(customer.days_since_last_order) && {read}"), &f), Ok(false));
        assert_eq!(eval(&format!("{read} && has(customer.days_since_last_order)"), &f), Ok(false));
        assert_eq!(eval(&format!("!has(customer.days_since_last_order) || {read}"), &f), Ok(true));
        assert_eq!(eval(&format!("has(customer.days_since_last_order) && {read}"), &facts()), Ok(true));
    }

    #[test]
    fn explain_gives_each_term_and_the_sides_of_comparisons() {
        let c = compile("scores.churn_risk >= 60.0 && customer.orders_count > 5 || \"vip\" in customer.tags")
            .unwrap();
        let x = c.explain(&facts());
        assert_eq!(x.result, Ok(true));
        let terms: Vec<(&str, &str)> = x.terms.iter().map(|t| (t.text.as_str(), t.value.as_str())).collect();
        assert_eq!(
            terms,
            [
                ("scores.churn_risk >= 60.0", "72.4 >= 60.0 → true"),
                ("customer.orders_count > 5", "3 > 5 → false"),
                ("\"vip\" in customer.tags", "\"vip\" in [\"vip\", \"newsletter\"] → true"),
            ]
        );

        let c = compile(
            "customer.email_consent && (scores.segment == \"at_risk\" ||\n    (size(customer.tags) > 3 && has(customer.last_order_at)))\n  && !(customer.id in [\"a\", \"b\"])",
        )
        .unwrap();
        let x = c.explain(&new_customer());
        let terms: Vec<(&str, &str)> = x.terms.iter().map(|t| (t.text.as_str(), t.value.as_str())).collect();
        assert_eq!(
            terms,
            [
                ("customer.email_consent", "true"),
                ("scores.segment == \"at_risk\"", "\"at_risk\" == \"at_risk\" → true"),
                ("size(customer.tags) > 3", "2 > 3 → false"),
                ("has(customer.last_order_at)", "false"),
                ("!(customer.id in [\"a\", \"b\"])", "true"),
            ]
        );
        assert_eq!(x.result, Ok(true));
        let shown = x.to_string();
        assert!(
            shown.contains("  has(customer.last_order_at): false\n") && shown.ends_with("→ true"),
            "{shown}"
        );

        let c = compile("customer.days_since_last_order > 90.0 && customer.last_order_at < timestamp(\"2026-01-01T00:00:00Z\")")
            .unwrap();
        let x = c.explain(&facts());
        assert_eq!(x.terms[0].value, "120.0 > 90.0 → true");
        assert_eq!(x.terms[1].value, "2025-08-05T09:30:00Z < 2026-01-01T00:00:00Z → true");
        let x = c.explain(&new_customer());
        assert!(x.result.is_err());
        assert!(x.terms[0].value.starts_with("error: customer.days_since_last_order has no value"), "{x}");

        assert_eq!(Condition::always().explain(&facts()), Explanation { result: Ok(true), terms: vec![] });
    }

    #[test]
    fn hostile_conditions_are_bounded() {
        let deep = format!("{}customer.orders_count{} > 1", "(".repeat(40), ")".repeat(40));
        assert!(err(&deep).message.contains("nests brackets"), "{}", err(&deep));
        let long = format!("customer.orders_count > 1{}", " && true".repeat(1000));
        assert!(err(&long).message.contains("longer than"));
        let chain = format!("customer.orders_count{} > 1", " + 1".repeat(200));
        assert!(err(&chain).message.contains("nested too deeply"), "{}", err(&chain));
        // As long as accepted, as deep as the parser's recursion goes: on a thread with a small stack.
        for (unit, end) in [("1+", "1 > 0"), ("!", "true"), ("-", "1 > 0"), ("[", "")] {
            let source = unit.repeat((MAX_SOURCE_BYTES - end.len()) / unit.len()) + end;
            let outcome = std::thread::Builder::new()
                .stack_size(2 << 20)
                .spawn(move || Condition::compile(&source, &Schema::flows_default()).map(|_| ()))
                .unwrap()
                .join()
                .expect("no stack overflow");
            // Repeated `!` and `-` fold into one (or none) as they parse: those are fine.
            assert!(outcome.is_err() || unit == "!" || unit == "-", "{unit}: {outcome:?}");
        }
        // The deepest accepted (`>`, the `+`s, the field read and its variable): compiled, evaluated and
        // explained on a small stack too.
        let chain = |n: usize| {
            format!(
                "{}customer.orders_count{}{} > 1",
                "(".repeat(MAX_NESTING),
                " + 1".repeat(n),
                ")".repeat(MAX_NESTING)
            )
        };
        assert_eq!(err(&chain(MAX_DEPTH - 2)).message, "the condition is nested too deeply");
        let deepest = chain(MAX_DEPTH - 3);
        let outcome = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let c = Condition::compile(&deepest, &Schema::flows_default())?;
                Ok::<_, ConditionError>((c.eval(&facts()), c.explain(&facts()).result))
            })
            .unwrap()
            .join()
            .expect("no stack overflow");
        assert_eq!(outcome, Ok((Ok(true), Ok(true))));
        let loops = "customer.tags.all(a, customer.tags.all(b, customer.tags.all(c, a == c)))";
        assert_eq!(err(loops).message, "loops nest at most 2 deep");
        compile("customer.tags.all(a, customer.tags.exists(b, a == b))").unwrap();

        // Value-dependent failures are evaluation errors, not panics.
        let f = facts();
        assert!(
            eval("9223372036854775807 + customer.orders_count > 0", &f).unwrap_err().contains("Overflow")
        );
        assert!(eval("customer.tags[5] == \"x\"", &f).unwrap_err().contains("out of bounds"));
        assert!(eval("100 / (customer.orders_count - 3) > 1", &f).unwrap_err().contains("Division by zero"));
        assert_eq!(eval("-9223372036854775808 < customer.orders_count", &f), Ok(true));
        assert_eq!(eval("customer.id != \"\\u0000\\U0001F600😀\" && [[[]]] != [[[1]]]", &f), Ok(true));
        for odd in [
            "customer.",
            ".customer.id",
            "customer.id.",
            "[",
            "}{",
            "customer.tags.all()",
            "r'''",
            "`x`",
            "a.?b",
        ] {
            assert!(compile(odd).is_err(), "{odd}");
        }
    }

    #[test]
    fn facts_are_checked_against_the_schema() {
        let schema = Schema::flows_default();
        assert_eq!(schema.check_facts(&schema.probe_facts()), Ok(()));
        let mut f = schema.probe_facts();
        f.customer.insert("last_order_at".into(), FactValue::Null);
        assert_eq!(schema.check_facts(&f), Ok(()));
        f.customer.insert("orders_count".into(), FactValue::Double(3.0));
        assert_eq!(
            schema.check_facts(&f),
            Err("customer.orders_count is double in the facts, int in the schema".into())
        );
        let mut f = schema.probe_facts();
        f.scores.remove("segment");
        assert_eq!(schema.check_facts(&f), Err("scores.segment is missing from the facts".into()));
        let mut f = schema.probe_facts();
        f.event.insert("topic".into(), FactValue::Null);
        assert_eq!(schema.check_facts(&f), Err("event.topic is not in the schema".into()));
        let custom = Schema::new().with_field("scores", "rfm", FactType::Int);
        assert_eq!(custom.fields("scores").collect::<Vec<_>>(), [("rfm", FactType::Int)]);
        assert_eq!(custom.field("customer", "id"), None);
        assert_eq!(Condition::compile("scores.rfm > 3", &custom).unwrap().inputs(), ["scores.rfm"]);
        assert!(
            Condition::compile("customer.id == \"x\"", &custom)
                .unwrap_err()
                .message
                .contains("`customer` has no fields")
        );
    }

    #[test]
    fn conditions_and_facts_can_be_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Condition>();
        shared::<Schema>();
        shared::<Facts>();
        shared::<PreparedFacts<'static>>();
        let c = compile("customer.orders_count > 2").unwrap();
        let f = facts();
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..2).map(|_| s.spawn(|| c.eval(&f))).collect();
            for h in handles {
                assert_eq!(h.join().unwrap(), Ok(true));
            }
        });
        assert_eq!(c.clone(), c);
        assert_eq!(format!("{c:?}"), "Condition(\"customer.orders_count > 2\")");
    }
}
