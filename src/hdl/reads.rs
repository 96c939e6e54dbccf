//! Which names a module reads: the right-hand sides, conditions, case subjects and labels,
//! select indices of assignment targets, and every instance connection (an
//! over-approximation: an output connection counts as a read). Generators use it to drop
//! pipeline registers nothing reads (a feature the config does not have) before Verilator's
//! `-Wall` would flag them.

use super::ir::*;
use std::collections::HashSet;

/// Identifiers in `e`.
pub fn expr_ids(e: &Expr, out: &mut HashSet<String>) {
    match e {
        Expr::Id(n) => {
            out.insert(n.clone());
        }
        Expr::Lit(_) | Expr::Str(_) => {}
        Expr::Index { base, index } => {
            expr_ids(base, out);
            expr_ids(index, out);
        }
        Expr::Slice { base, hi, lo } => {
            expr_ids(base, out);
            expr_ids(hi, out);
            expr_ids(lo, out);
        }
        Expr::PartUp { base, start, width } => {
            expr_ids(base, out);
            expr_ids(start, out);
            expr_ids(width, out);
        }
        Expr::Concat(ps) => ps.iter().for_each(|p| expr_ids(p, out)),
        Expr::Repl { count, parts } => {
            expr_ids(count, out);
            parts.iter().for_each(|p| expr_ids(p, out));
        }
        Expr::Unary(_, x) | Expr::Signed(x) | Expr::Unsigned(x) | Expr::Clog2(x) => {
            expr_ids(x, out)
        }
        Expr::Binary(_, a, b) => {
            expr_ids(a, out);
            expr_ids(b, out);
        }
        Expr::Ternary { cond, then_, else_ } => {
            expr_ids(cond, out);
            expr_ids(then_, out);
            expr_ids(else_, out);
        }
    }
}

/// The index expressions of an assignment target (its base is written, not read).
fn lvalue_reads(e: &Expr, out: &mut HashSet<String>) {
    match e {
        Expr::Index { base, index } => {
            lvalue_reads(base, out);
            expr_ids(index, out);
        }
        Expr::Slice { base, hi, lo } => {
            lvalue_reads(base, out);
            expr_ids(hi, out);
            expr_ids(lo, out);
        }
        Expr::PartUp { base, start, width } => {
            lvalue_reads(base, out);
            expr_ids(start, out);
            expr_ids(width, out);
        }
        Expr::Concat(ps) => ps.iter().for_each(|p| lvalue_reads(p, out)),
        _ => {}
    }
}

/// Names read by statements.
pub fn stmt_reads(ss: &[Stmt], out: &mut HashSet<String>) {
    for s in ss {
        match s {
            Stmt::Blocking { lhs, rhs } | Stmt::NonBlocking { lhs, rhs } => {
                lvalue_reads(lhs, out);
                expr_ids(rhs, out);
            }
            Stmt::If { cond, then_, else_ } => {
                expr_ids(cond, out);
                stmt_reads(then_, out);
                stmt_reads(else_, out);
            }
            Stmt::Case {
                subject,
                arms,
                default,
            } => {
                expr_ids(subject, out);
                for a in arms {
                    a.labels.iter().for_each(|l| expr_ids(l, out));
                    stmt_reads(&a.body, out);
                }
                stmt_reads(default, out);
            }
            Stmt::For {
                start, limit, body, ..
            } => {
                expr_ids(start, out);
                expr_ids(limit, out);
                stmt_reads(body, out);
            }
            Stmt::Comment(_) => {}
        }
    }
}

/// Names read by items (recursing into generate blocks).
pub fn item_reads(items: &[Item], out: &mut HashSet<String>) {
    for it in items {
        match it {
            Item::Assign { lhs, rhs } => {
                lvalue_reads(lhs, out);
                expr_ids(rhs, out);
            }
            Item::Always(a) => {
                if let Sensitivity::Posedge(c) = &a.sens {
                    out.insert(c.clone());
                }
                stmt_reads(&a.body, out);
            }
            Item::Instance(i) => {
                i.params.iter().for_each(|(_, e)| expr_ids(e, out));
                i.conns.iter().for_each(|(_, e)| expr_ids(e, out));
            }
            Item::GenFor(g) => {
                expr_ids(&g.start, out);
                expr_ids(&g.limit, out);
                item_reads(&g.items, out);
            }
            Item::GenIf(g) => {
                expr_ids(&g.cond, out);
                item_reads(&g.then_.items, out);
                if let Some(e) = &g.else_ {
                    item_reads(&e.items, out);
                }
            }
            Item::Decl(d) => {
                expr_ids(&d.width, out);
                d.dims.iter().for_each(|x| expr_ids(x, out));
            }
            Item::Memory(m) => {
                expr_ids(&m.width, out);
                expr_ids(&m.depth, out);
            }
            Item::Integer(_) | Item::Genvar(_) | Item::Comment(_) => {}
        }
    }
}
