//! What the generated RTL declares, counted from the IR itself: hard multipliers and
//! flip-flop bits of a top module, elaborated through its instances and generate loops with
//! the parameter values each instance gets.
//!
//! The fit estimate ([`super::fit`]) reads these counts instead of keeping its own list of
//! the engine's units, so a unit that gains a pipeline stage or a multiplier is counted the
//! moment the generator emits it. The counts follow how yosys `synth_ecp5` maps the text:
//! - a `*` whose operands are not both constant is one MULT18X18D (the generator splits
//!   every wide product into 18×18 pieces, [`super::util::mul_pipelined`]); a product with a
//!   power-of-two literal is a shift and costs none, and so is one that computes a select's
//!   position;
//! - a flip-flop bit is a bit of a `reg` (or `output reg`) assigned in an
//!   `always @(posedge …)` block; memories (`reg [..] m [0:N]` with [`crate::hdl::Memory`])
//!   are block or LUT RAM and not counted. Yosys removes constant and unread bits, so the
//!   measured count is a little lower (docs/fit-calibration.json has both);
//! - an instance with a simulation model (`` `ifdef SYNTHESIS ``) counts its synthesis
//!   module, as yosys reads it; ECP5 primitives count nothing.

use crate::hdl::{eval_const as eval, Always, BinOp, Expr, Item, Module, Sensitivity, Stmt};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Multipliers and flip-flop bits of one module type, summed over its instances.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ModuleCount {
    pub instances: usize,
    pub mult18: usize,
    pub ff: usize,
}

/// The whole hierarchy under a top module.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Census {
    pub mult18: usize,
    pub ff: usize,
    /// Per module type (name → counts over all its instances).
    pub modules: BTreeMap<String, ModuleCount>,
}

/// Count the hierarchy under `top` in `lib`. Errors name a module or parameter the walk
/// could not resolve (a generator bug: every loop bound and width must be a constant of
/// the parameters).
pub fn census(lib: &[Module], top: &str) -> Result<Census, String> {
    let mut c = Census::default();
    let m = find(lib, top)?;
    let env = module_env(m, &[], &HashMap::new())?;
    walk(lib, m, &env, &mut c, 0)?;
    c.mult18 = c.modules.values().map(|m| m.mult18).sum();
    c.ff = c.modules.values().map(|m| m.ff).sum();
    Ok(c)
}

fn find<'a>(lib: &'a [Module], name: &str) -> Result<&'a Module, String> {
    lib.iter()
        .find(|m| m.name == name)
        .ok_or_else(|| format!("module `{name}` is instantiated but not generated"))
}

type Env = HashMap<String, i64>;

/// Parameter values of `m` given an instance's overrides (evaluated in the parent's env).
fn module_env(m: &Module, overrides: &[(String, Expr)], parent: &Env) -> Result<Env, String> {
    let mut env = Env::new();
    for p in &m.params {
        let v = match overrides.iter().find(|(n, _)| *n == p.name) {
            Some((_, e)) => eval(e, parent),
            None => eval(&p.default, &env),
        };
        // String parameters of vendor primitives have no value here; skip them.
        if let Some(v) = v {
            env.insert(p.name.clone(), v);
        }
    }
    for p in &m.localparams {
        if let Some(v) = eval(&p.default, &env) {
            env.insert(p.name.clone(), v);
        }
    }
    Ok(env)
}

fn walk(lib: &[Module], m: &Module, env: &Env, c: &mut Census, depth: usize) -> Result<(), String> {
    if depth > 64 {
        return Err(format!("instance hierarchy deeper than 64 at `{}`", m.name));
    }
    let mut clocked = HashSet::new();
    clocked_names(&m.items, &mut clocked);
    let mut count = ModuleCount {
        instances: 1,
        ..ModuleCount::default()
    };
    for p in &m.ports {
        if clocked.contains(&p.name) {
            count.ff += bits(&p.width, &[], env, &m.name, &p.name)?;
        }
    }
    let mut children = Vec::new();
    items(&m.items, env, &clocked, &m.name, &mut count, &mut children)?;
    let e = c.modules.entry(m.name.clone()).or_default();
    e.instances += count.instances;
    e.mult18 += count.mult18;
    e.ff += count.ff;
    for (module, overrides, env) in children {
        if PRIMITIVES.contains(&module.as_str()) {
            continue;
        }
        let child = find(lib, &module)?;
        let cenv = module_env(child, &overrides, &env)?;
        walk(lib, child, &cenv, c, depth + 1)?;
    }
    Ok(())
}

type Child = (String, Vec<(String, Expr)>, Env);

/// ECP5 primitives the generator instantiates directly. They hold no fabric flip-flops or
/// multipliers (a DP16KD's output register is its own; block RAMs are counted from the
/// memory map), so the walk stops at them.
const PRIMITIVES: &[&str] = &["DP16KD", "EHXPLLL"];

fn items(
    its: &[Item],
    env: &Env,
    clocked: &HashSet<String>,
    module: &str,
    count: &mut ModuleCount,
    children: &mut Vec<Child>,
) -> Result<(), String> {
    for it in its {
        match it {
            Item::Decl(d) if clocked.contains(&d.name) => {
                count.ff += bits(&d.width, &d.dims, env, module, &d.name)?;
            }
            Item::Assign { rhs, .. } => count.mult18 += products(rhs, env),
            Item::Always(Always { body, .. }) => count.mult18 += stmt_products(body, env),
            Item::Instance(i) => children.push((i.module.clone(), i.params.clone(), env.clone())),
            Item::GenFor(g) => {
                let (start, limit) = (eval(&g.start, env), eval(&g.limit, env));
                let (Some(start), Some(limit)) = (start, limit) else {
                    return Err(format!(
                        "{module}: the bounds of generate loop `{}` are not constant",
                        g.label
                    ));
                };
                for v in start..limit {
                    let mut e = env.clone();
                    e.insert(g.var.clone(), v);
                    items(&g.items, &e, clocked, module, count, children)?;
                }
            }
            Item::GenIf(g) => {
                let Some(cond) = eval(&g.cond, env) else {
                    return Err(format!(
                        "{module}: a generate `if` condition is not constant"
                    ));
                };
                if cond != 0 {
                    items(&g.then_.items, env, clocked, module, count, children)?;
                } else if let Some(b) = &g.else_ {
                    items(&b.items, env, clocked, module, count, children)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn bits(width: &Expr, dims: &[Expr], env: &Env, module: &str, name: &str) -> Result<usize, String> {
    let mut n =
        eval(width, env).ok_or_else(|| format!("{module}: width of `{name}` is not constant"))?;
    for d in dims {
        n *= eval(d, env).ok_or_else(|| format!("{module}: size of `{name}` is not constant"))?;
    }
    usize::try_from(n).map_err(|_| format!("{module}: `{name}` has a negative size"))
}

/// Names assigned with `<=` in clocked blocks (anywhere in the module, generate loops too).
fn clocked_names(its: &[Item], out: &mut HashSet<String>) {
    for it in its {
        match it {
            Item::Always(Always {
                sens: Sensitivity::Posedge(_),
                body,
                ..
            }) => stmt_targets(body, out),
            Item::GenFor(g) => clocked_names(&g.items, out),
            Item::GenIf(g) => {
                clocked_names(&g.then_.items, out);
                if let Some(b) = &g.else_ {
                    clocked_names(&b.items, out);
                }
            }
            _ => {}
        }
    }
}

fn stmt_targets(body: &[Stmt], out: &mut HashSet<String>) {
    for s in body {
        match s {
            Stmt::NonBlocking { lhs, .. } => lhs_roots(lhs, out),
            Stmt::If { then_, else_, .. } => {
                stmt_targets(then_, out);
                stmt_targets(else_, out);
            }
            Stmt::Case { arms, default, .. } => {
                for a in arms {
                    stmt_targets(&a.body, out);
                }
                stmt_targets(default, out);
            }
            Stmt::For { body, .. } => stmt_targets(body, out),
            _ => {}
        }
    }
}

fn lhs_roots(e: &Expr, out: &mut HashSet<String>) {
    match e {
        Expr::Id(n) => {
            out.insert(n.clone());
        }
        Expr::Index { base, .. } | Expr::Slice { base, .. } | Expr::PartUp { base, .. } => {
            lhs_roots(base, out)
        }
        Expr::Concat(ps) => ps.iter().for_each(|p| lhs_roots(p, out)),
        _ => {}
    }
}

fn stmt_products(body: &[Stmt], env: &Env) -> usize {
    body.iter()
        .map(|s| match s {
            Stmt::Blocking { rhs, .. } | Stmt::NonBlocking { rhs, .. } => products(rhs, env),
            Stmt::If { cond, then_, else_ } => {
                products(cond, env) + stmt_products(then_, env) + stmt_products(else_, env)
            }
            Stmt::Case {
                subject,
                arms,
                default,
            } => {
                products(subject, env)
                    + arms
                        .iter()
                        .map(|a| stmt_products(&a.body, env))
                        .sum::<usize>()
                    + stmt_products(default, env)
            }
            // A procedural loop repeats its body in hardware once per iteration.
            Stmt::For {
                start, limit, body, ..
            } => {
                let n = match (eval(start, env), eval(limit, env)) {
                    (Some(a), Some(b)) if b > a => (b - a) as usize,
                    _ => 1,
                };
                n * stmt_products(body, env)
            }
            Stmt::Comment(_) => 0,
        })
        .sum()
}

/// Hard multipliers in an expression.
fn products(e: &Expr, env: &Env) -> usize {
    match e {
        Expr::Binary(op, a, b) => {
            let own = usize::from(
                *op == BinOp::Mul
                    && !(eval(a, env).is_some() && eval(b, env).is_some())
                    && !is_pow2_literal(a, env)
                    && !is_pow2_literal(b, env),
            );
            own + products(a, env) + products(b, env)
        }
        // A product in a select's position (`outs[sel * W +: W]`) is the select's own
        // arithmetic, which yosys folds into the multiplexer: no DSP.
        Expr::Index { base, .. } | Expr::Slice { base, .. } | Expr::PartUp { base, .. } => {
            products(base, env)
        }
        Expr::Concat(ps) => ps.iter().map(|p| products(p, env)).sum(),
        Expr::Repl { parts, .. } => parts.iter().map(|p| products(p, env)).sum(),
        Expr::Unary(_, x) | Expr::Signed(x) | Expr::Unsigned(x) => products(x, env),
        Expr::Ternary { cond, then_, else_ } => {
            products(cond, env) + products(then_, env) + products(else_, env)
        }
        _ => 0,
    }
}

fn is_pow2_literal(e: &Expr, env: &Env) -> bool {
    eval(e, env).is_some_and(|v| v > 0 && (v & (v - 1)) == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hdl::{id, lit, nb, Instance, Scope};

    #[test]
    fn counts_multipliers_and_flops_through_instances_and_loops() {
        // leaf: one 8-bit register fed by a product, one product by 4 (a shift).
        let mut leaf = Module::new("leaf");
        leaf.param("W", lit(32, 8));
        let a = leaf.input("a_i", id("W"));
        let q = leaf.reg("q_q", id("W"));
        let s = leaf.wire("s", id("W"));
        leaf.assign(&s, &a * lit(32, 4));
        leaf.always_ff(&id("clk_i"), vec![nb(&q, &a * a.clone())]);
        let mut top = Module::new("top");
        top.gen_for("k", lit(32, 0), lit(32, 3), "g_k", |s, _k| {
            let mut i = Instance::new("leaf", "u_leaf");
            i.params.push(("W".into(), lit(32, 12)));
            s.instance(i);
        });
        let c = census(&[leaf, top], "top").unwrap();
        assert_eq!(c.mult18, 3);
        assert_eq!(c.ff, 3 * 12);
        assert_eq!(c.modules["leaf"].instances, 3);
    }
}
