//! The SQL the read side runs (rules' queries and `misfit query`), checked on
//! its parsed form before Polars plans it: one SELECT query that reads the
//! run's tables and nothing else.
//!
//! Polars SQL can read any file on the machine through table functions
//! (`read_parquet('/some/file')`, with globs), and plans every expression
//! recursively: a flat chain of a few thousand `OR` terms costs gigabytes
//! and, longer, overflows the stack. So the text is bounded
//! ([`MAX_SQL_BYTES`]), the parser's recursion is bounded
//! ([`PARSER_RECURSION_LIMIT`]), and the parsed query must be one query
//! whose expressions nest at most [`MAX_DEPTH`] levels (a chain of `n`
//! `AND`/`OR` terms, or a `CASE` of `n` branches, counts `n`), and whose
//! every `FROM`/`JOIN` item is a table of the run, a CTE of the query, a
//! subquery or an `UNNEST` of values. Table functions are refused unless the
//! person asked for them (`misfit query --allow-files`).

use sqlparser::ast::{Expr, ObjectName, ObjectNamePart, Query, Select, Statement, TableFactor, Visit, Visitor};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::{Parser, ParserOptions};
use std::collections::BTreeSet;
use std::ops::ControlFlow;

/// The longest SQL accepted, in bytes.
pub const MAX_SQL_BYTES: usize = 64 * 1024;
/// The deepest expression accepted (see the module documentation for how
/// depth is counted). Polars plans a chain of 200 `OR` terms in
/// milliseconds; the cost grows faster than the chain (1,000 terms took
/// 3.8 GB and 13 s, 9,000 overflowed the stack).
pub const MAX_DEPTH: usize = 200;
/// The parser's recursion limit (parentheses, subqueries): that of the
/// parser Polars runs on the same text, so that what passes here parses
/// there.
pub const PARSER_RECURSION_LIMIT: usize = 50;

/// Polars' table functions: each reads a file named by its argument.
const TABLE_FUNCTIONS: &[&str] = &["read_csv", "read_parquet", "read_ipc", "read_json"];

/// Why a query is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqlError {
    /// The text is longer than [`MAX_SQL_BYTES`].
    #[error("the SQL is {bytes} bytes long; at most {max} are accepted")]
    TooLong { bytes: usize, max: usize },
    /// The text does not parse (or nests deeper than the parser's limit).
    #[error("the SQL does not parse: {0}")]
    Parse(String),
    /// Not exactly one statement.
    #[error("the SQL must be one SELECT query; it has {0} statements")]
    Statements(usize),
    /// A statement other than a query (DDL, DML, COPY, SET, ...).
    #[error("the SQL must be a SELECT query (not {0}): the read side only reads the run's tables")]
    NotAQuery(String),
    /// Expressions nested deeper than [`MAX_DEPTH`].
    #[error(
        "the SQL nests expressions deeper than {max} levels (a chain of n AND/OR terms, or a CASE of n branches, counts n); use IN (...) for a list of values, or split the query"
    )]
    TooDeep { max: usize },
    /// A table function: it would read a file.
    #[error(
        "the query reads '{0}(...)', a table function that reads files; the read side reads only the run's tables (`misfit query --allow-files` reads other files on purpose)"
    )]
    TableFunction(String),
    /// A CTE named after a table function.
    #[error("the query defines a CTE named '{0}', the name of a table function; rename it")]
    ShadowsTableFunction(String),
    /// A table name that is not one of the run's tables nor a CTE.
    #[error("the query reads '{name}', which is not one of the run's tables; tables: {tables}")]
    UnknownTable { name: String, tables: String },
    /// A FROM item or clause misfit does not run.
    #[error("the query uses {0}, which the read side does not run")]
    Unsupported(String),
}

/// A query that passed [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The tables of the run the query reads (not its CTEs), sorted.
    pub tables: Vec<String>,
}

/// Checks `sql` against the run's `tables`: see the module documentation.
/// `allow_files` lets table functions through (`misfit query
/// --allow-files`); every other check holds.
pub fn check(sql: &str, tables: &[&str], allow_files: bool) -> Result<Checked, SqlError> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(SqlError::TooLong { bytes: sql.len(), max: MAX_SQL_BYTES });
    }
    let statements = Parser::new(&GenericDialect)
        .with_recursion_limit(PARSER_RECURSION_LIMIT)
        .with_options(ParserOptions { trailing_commas: true, ..Default::default() })
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| SqlError::Parse(e.to_string()))?;
    let [statement] = statements.as_slice() else {
        return Err(SqlError::Statements(statements.len()));
    };
    let Statement::Query(_) = statement else {
        let kind = statement.to_string();
        let kind: String = kind.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        return Err(SqlError::NotAQuery(kind));
    };
    // Depth first, on its own: the walk stops at the bound, so no later
    // walk (nor Polars) meets a deeper tree.
    let mut depth = Depth { weights: Vec::new(), depth: 0 };
    if let ControlFlow::Break(e) = statement.visit(&mut depth) {
        return Err(e);
    }
    let mut sources = Sources { known: tables, allow_files, scopes: Vec::new(), read: BTreeSet::new() };
    if let ControlFlow::Break(e) = statement.visit(&mut sources) {
        return Err(e);
    }
    Ok(Checked { tables: sources.read.into_iter().collect() })
}

/// Measures expression depth, stopping past [`MAX_DEPTH`].
struct Depth {
    /// What each open expression added to `depth`.
    weights: Vec<usize>,
    depth: usize,
}

impl Visitor for Depth {
    type Break = SqlError;

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<SqlError> {
        // Polars turns a CASE of n branches into n nested when/then.
        let weight = match expr {
            Expr::Case { conditions, .. } => conditions.len().max(1),
            _ => 1,
        };
        self.weights.push(weight);
        self.depth += weight;
        if self.depth > MAX_DEPTH {
            return ControlFlow::Break(SqlError::TooDeep { max: MAX_DEPTH });
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<SqlError> {
        self.depth -= self.weights.pop().unwrap_or(0);
        ControlFlow::Continue(())
    }
}

/// Checks every FROM item against the run's tables and the CTEs in scope.
struct Sources<'a> {
    known: &'a [&'a str],
    allow_files: bool,
    /// The CTE names (and table-function aliases) of each open query.
    scopes: Vec<Vec<String>>,
    /// The run's tables read.
    read: BTreeSet<String>,
}

impl Sources<'_> {
    fn in_scope(&self, name: &str) -> bool {
        self.scopes.iter().any(|s| s.iter().any(|c| c == name))
    }

    fn unknown(&self, name: String) -> SqlError {
        SqlError::UnknownTable { name, tables: self.known.join(", ") }
    }
}

/// The one identifier of a table name (`samples`, `"samples"`); None for
/// a qualified or computed name.
fn single(name: &ObjectName) -> Option<&str> {
    match name.0.as_slice() {
        [ObjectNamePart::Identifier(ident)] => Some(ident.value.as_str()),
        _ => None,
    }
}

impl Visitor for Sources<'_> {
    type Break = SqlError;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<SqlError> {
        let mut names = Vec::new();
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                let name = cte.alias.name.value.clone();
                if TABLE_FUNCTIONS.contains(&name.to_lowercase().as_str()) {
                    return ControlFlow::Break(SqlError::ShadowsTableFunction(name));
                }
                names.push(name);
            }
        }
        self.scopes.push(names);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<SqlError> {
        self.scopes.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<SqlError> {
        if select.into.is_some() {
            return ControlFlow::Break(SqlError::Unsupported("SELECT ... INTO".into()));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<SqlError> {
        match factor {
            TableFactor::Table { name, args, alias, .. } => {
                let shown = name.to_string();
                if args.is_some() {
                    if !self.allow_files {
                        return ControlFlow::Break(SqlError::TableFunction(shown));
                    }
                    if let (Some(alias), Some(scope)) = (alias, self.scopes.last_mut()) {
                        scope.push(alias.name.value.clone());
                    }
                    return ControlFlow::Continue(());
                }
                let Some(table) = single(name) else {
                    return ControlFlow::Break(self.unknown(shown));
                };
                if self.in_scope(table) {
                    return ControlFlow::Continue(());
                }
                if !self.known.contains(&table) {
                    return ControlFlow::Break(self.unknown(table.to_string()));
                }
                self.read.insert(table.to_string());
                ControlFlow::Continue(())
            }
            TableFactor::Derived { .. } | TableFactor::NestedJoin { .. } | TableFactor::UNNEST { .. } => {
                ControlFlow::Continue(())
            }
            TableFactor::Function { name, .. } => ControlFlow::Break(SqlError::TableFunction(name.to_string())),
            TableFactor::TableFunction { .. } => ControlFlow::Break(SqlError::TableFunction("TABLE".into())),
            other => {
                let text = other.to_string();
                let word: String = text.split(|c: char| c == '(' || c.is_whitespace()).next().unwrap_or("").into();
                ControlFlow::Break(SqlError::Unsupported(format!("'{word}' in FROM")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLES: &[&str] = &["samples", "classes"];

    fn refused(sql: &str) -> String {
        check(sql, TABLES, false).unwrap_err().to_string()
    }

    fn or_chain(n: usize) -> String {
        let terms: Vec<String> = (0..n).map(|i| format!("id = 'x{i}'")).collect();
        format!("SELECT id FROM samples WHERE {}", terms.join(" OR "))
    }

    #[test]
    fn a_query_over_the_run_s_tables_and_its_ctes_passes() {
        let ok = check(
            "WITH far AS (SELECT id FROM samples WHERE outlier) \
             SELECT c.class_name, (SELECT count(*) FROM far) AS n FROM classes c JOIN far ON true, \
             (SELECT 1 AS one) AS d, UNNEST(ARRAY[1, 2]) AS u (x)",
            TABLES,
            false,
        )
        .unwrap();
        assert_eq!(ok.tables, vec!["classes", "samples"]);
        assert_eq!(check("SELECT * FROM \"samples\"", TABLES, false).unwrap().tables, vec!["samples"]);
    }

    #[test]
    fn every_way_to_read_a_file_is_refused() {
        // The bypass of the old check: a CTE named after the table function.
        let e = refused("WITH read_parquet AS (SELECT 1 AS x) SELECT * FROM read_parquet('/etc/secret.parquet')");
        assert!(e.contains("CTE named 'read_parquet'"), "{e}");
        let e = refused("WITH x AS (SELECT 1 AS a) SELECT * FROM read_parquet('/etc/secret.parquet')");
        assert!(e.contains("'read_parquet(...)', a table function") && e.contains("--allow-files"), "{e}");
        for sql in [
            "SELECT * FROM read_parquet('../other-run/*.parquet')",
            "SELECT * FROM READ_CSV('/etc/passwd')",
            "SELECT * FROM samples JOIN read_ipc('x.ipc') ON true",
            "SELECT * FROM (SELECT * FROM read_json('x.json')) AS t",
            "SELECT id FROM samples WHERE id IN (SELECT id FROM read_parquet('x.parquet'))",
            "WITH read_x AS (SELECT * FROM read_parquet('x.parquet')) SELECT * FROM read_x",
            "SELECT * FROM anything('x')",
        ] {
            assert!(refused(sql).contains("a table function"), "{sql}: {}", refused(sql));
        }
        for sql in ["SELECT * FROM \"/etc/secret.parquet\"", "SELECT * FROM other.samples", "SELECT * FROM secrets"] {
            assert!(refused(sql).contains("not one of the run's tables; tables: samples, classes"), "{sql}");
        }
        // A CTE is visible in its own query only.
        let e = refused("SELECT * FROM (WITH t AS (SELECT 1 AS a) SELECT * FROM t) AS d, t");
        assert!(e.contains("reads 't'"), "{e}");
        // On purpose: the table function goes through, the rest still holds.
        let ok =
            check("SELECT * FROM read_parquet('other.parquet') AS o JOIN samples ON o.id = samples.id", TABLES, true);
        assert_eq!(ok.unwrap().tables, vec!["samples"]);
        assert!(check("SELECT * FROM secrets", TABLES, true).is_err());
    }

    #[test]
    fn only_one_select_query_is_run() {
        for (sql, what) in [
            ("DROP TABLE samples", "must be a SELECT query (not DROP TABLE)"),
            ("CREATE TABLE t AS SELECT * FROM read_parquet('x')", "must be a SELECT query (not CREATE TABLE)"),
            ("COPY samples TO '/tmp/x'", "must be a SELECT query (not COPY"),
            ("DELETE FROM samples", "must be a SELECT query"),
            ("TRUNCATE samples", "must be a SELECT query"),
            ("EXPLAIN SELECT * FROM read_parquet('x')", "must be a SELECT query"),
            ("SHOW TABLES", "must be a SELECT query"),
            ("SELECT 1; SELECT 2", "it has 2 statements"),
            ("", "it has 0 statements"),
            ("SELECT * INTO t FROM samples", "SELECT ... INTO"),
            ("SELEC id FROM samples", "does not parse"),
        ] {
            let e = refused(sql);
            assert!(e.contains(what), "{sql}: {e}");
        }
    }

    #[test]
    fn long_and_deep_sql_is_refused_quickly_without_a_crash() {
        // The chains of the issue: 1,000 terms (3.8 GB and 13 s in Polars),
        // 9,000 (a stack overflow), and the longest chain the size allows.
        // 9,000 such terms are over the size bound; 9,000 short terms are not.
        let short = format!("SELECT id FROM samples WHERE {}", vec!["a"; 9_000].join(" OR "));
        for (sql, why) in [
            (or_chain(1_000), "nests expressions deeper than 200 levels"),
            (or_chain(9_000), "bytes long; at most 65536"),
            (short, "nests expressions deeper than 200 levels"),
        ] {
            let start = std::time::Instant::now();
            let e = refused(&sql);
            assert!(e.contains(why), "{} bytes: {e}", sql.len());
            assert!(start.elapsed().as_secs_f64() < 2.0, "{} bytes: {:?}", sql.len(), start.elapsed());
        }
        let long = or_chain(20_000);
        assert!(refused(&long).contains("bytes long; at most 65536"));
        let most: String = {
            let mut s = "SELECT id FROM samples WHERE a".to_string();
            while s.len() + 5 < MAX_SQL_BYTES {
                s.push_str(" OR a");
            }
            s
        };
        assert!(refused(&most).contains("deeper than 200"));
        let casts = format!("SELECT a{} FROM samples", "::int".repeat((MAX_SQL_BYTES - 40) / 5));
        assert!(refused(&casts).contains("deeper than 200"));
        let case = format!("SELECT CASE {} END FROM samples", "WHEN a = 1 THEN 2 ".repeat(300));
        assert!(refused(&case).contains("deeper than 200"));
        let parens = format!("SELECT {}1{} FROM samples", "(".repeat(5_000), ")".repeat(5_000));
        assert!(refused(&parens).contains("does not parse"), "{}", refused(&parens));
        let subqueries = format!("SELECT * FROM {}samples{}", "(SELECT * FROM ".repeat(500), ") AS t".repeat(500));
        assert!(refused(&subqueries).contains("does not parse"));
        // Just under the bound passes.
        assert!(check(&or_chain(150), TABLES, false).is_ok());
        let case = format!("SELECT CASE {} END FROM samples", "WHEN a = 1 THEN 2 ".repeat(150));
        assert!(check(&case, TABLES, false).is_ok());
    }
}
