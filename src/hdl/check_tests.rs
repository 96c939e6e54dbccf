//! Checker unit tests: one per error kind, each asserting the full message.

use super::examples::*;
use super::*;

fn msgs(m: &Module, lib: &[&Module]) -> Vec<String> {
    match check(m, lib) {
        Ok(()) => vec![],
        Err(es) => es.iter().map(|e| e.to_string()).collect(),
    }
}

fn assert_msg(m: &Module, lib: &[&Module], expected: &str) {
    let got = msgs(m, lib);
    assert!(
        got.iter().any(|g| g == expected),
        "expected error\n  {expected}\ngot\n  {}",
        got.join("\n  ")
    );
}

/// `t` with clk_i, a_i[8], y_o[8]; callers add the faulty part.
fn base() -> (Module, Expr, Expr, Expr) {
    let mut m = Module::new("t");
    let clk = m.input("clk_i", 1);
    let a = m.input("a_i", 8);
    let y = m.output("y_o", 8);
    (m, clk, a, y)
}

/// A leaf module to instantiate: `leaf #(W) (x_i, z_o)`.
fn leaf() -> Module {
    let mut m = Module::new("leaf");
    let w = m.param("W", 8);
    let x = m.input("x_i", &w);
    let z = m.output("z_o", &w);
    m.assign(z, x);
    m
}

#[test]
fn examples_pass() {
    let pe = mac_pe("mac_pe", 8, 32);
    let grid = mac_grid("mac_grid", &pe, 3, 2, 8, 32);
    assert_eq!(msgs(&pe, &[]), Vec::<String>::new());
    assert_eq!(msgs(&grid, &[&pe]), Vec::<String>::new());
    assert_eq!(msgs(&rom("r", 8, 4, "r.hex"), &[]), Vec::<String>::new());
    assert_eq!(msgs(&seq_fsm("f", 4), &[]), Vec::<String>::new());
    assert_eq!(msgs(&leaf(), &[]), Vec::<String>::new());
}

#[test]
fn undeclared_name() {
    let (mut m, _, _, y) = base();
    m.assign(y, id("nope"));
    assert_msg(&m, &[], "module `t`: `nope`: used but not declared");
}

#[test]
fn generate_scopes_and_genvars() {
    // Genvar usable inside its loop; a wire local to one generate block is
    // not visible in the module scope.
    let (mut m, _, a, y) = base();
    m.genvar("i");
    let tmp = m.wire("tmp", 8);
    m.gen_for("i", 0, 8, "g_bit", |b, i| {
        let local = b.wire("local", 1);
        b.assign(&local, a.idx(&i));
        b.assign(tmp.idx(&i), &local);
    });
    m.assign(&y, &tmp);
    assert_eq!(msgs(&m, &[]), Vec::<String>::new());
    m.assign(id("spare"), id("local"));
    let got = msgs(&m, &[]);
    assert!(got.contains(&"module `t`: `local`: used but not declared".to_string()));
    assert!(got.contains(&"module `t`: `spare`: used but not declared".to_string()));
}

#[test]
fn duplicate_declaration() {
    let (mut m, _, a, y) = base();
    m.wire("x", 8);
    m.wire("x", 8);
    m.assign(id("x"), &a);
    m.assign(y, id("x"));
    assert_msg(
        &m,
        &[],
        "module `t`: `x`: declared more than once in the same scope",
    );
    // A port redeclared as a signal is a duplicate too.
    let (mut m, _, a, y) = base();
    m.reg("a_i", 8);
    m.assign(y, a);
    assert_msg(
        &m,
        &[],
        "module `t`: `a_i`: declared more than once in the same scope",
    );
}

#[test]
fn reg_driven_by_assign() {
    let (mut m, _, a, y) = base();
    let r = m.reg("r", 8);
    m.assign(&r, &a);
    m.assign(y, r);
    assert_msg(
        &m,
        &[],
        "module `t`: `r`: is a reg but is driven by a continuous assign (use a wire)",
    );
    let mut m = Module::new("t");
    let a = m.input("a_i", 8);
    let q = m.output_reg("q_o", 8);
    m.assign(q, a);
    assert_msg(
        &m,
        &[],
        "module `t`: `q_o`: is a reg but is driven by a continuous assign (use a wire)",
    );
}

#[test]
fn reg_driven_by_instance_output() {
    let (mut m, _, a, y) = base();
    let r = m.reg("r", 8);
    m.instance(
        Instance::new("leaf", "u_leaf")
            .conn("x_i", &a)
            .conn("z_o", &r),
    );
    m.assign(y, r);
    assert_msg(
        &m,
        &[&leaf()],
        "module `t`: `r`: is a reg but is driven by output `z_o` of instance `u_leaf` (use a wire)",
    );
}

#[test]
fn wire_assigned_in_always() {
    let (mut m, clk, a, y) = base();
    let w = m.wire("w", 8);
    m.always_ff(&clk, vec![nb(&w, &a)]);
    m.assign(&y, &w);
    assert_msg(
        &m,
        &[],
        "module `t`: `w`: is a wire but is assigned in an always block (declare it reg)",
    );
    let (mut m, _, a, y) = base();
    m.always_comb(vec![set(&y, &a)]);
    assert_msg(
        &m,
        &[],
        "module `t`: `y_o`: is a wire but is assigned in an always block (declare it reg)",
    );
}

#[test]
fn two_assigns_drive_one_signal() {
    let (mut m, _, a, y) = base();
    m.assign(&y, &a);
    m.assign(&y, !&a);
    assert_msg(
        &m,
        &[],
        "module `t`: `y_o`: is driven from two places: a continuous assign and a continuous assign",
    );
    // Disjoint constant slices are fine; overlapping ones are not.
    let (mut m, _, a, y) = base();
    m.assign(y.slice(3, 0), a.slice(3, 0));
    m.assign(y.slice(7, 4), a.slice(7, 4));
    assert_eq!(msgs(&m, &[]), Vec::<String>::new());
    m.assign(y.idx(4), lit(1, 0));
    assert_msg(
        &m,
        &[],
        "module `t`: `y_o`: is driven from two places: a continuous assign and a continuous assign",
    );
}

#[test]
fn assign_and_always_drive_one_signal() {
    let (mut m, clk, a, y) = base();
    let r = m.reg("r", 8);
    m.always_ff(&clk, vec![nb(&r, &a)]);
    m.assign(&r, &a);
    m.assign(y, r);
    assert_msg(
        &m,
        &[],
        "module `t`: `r`: is driven from two places: a clocked always block and a continuous assign",
    );
    // Two always blocks on one reg.
    let (mut m, clk, a, y) = base();
    let r = m.reg("r", 8);
    m.always_ff(&clk, vec![nb(&r, &a)]);
    m.always_comb(vec![set(&r, &a)]);
    m.assign(y, r);
    assert_msg(
        &m,
        &[],
        "module `t`: `r`: is driven from two places: a clocked always block and a combinational always block",
    );
}

#[test]
fn driven_by_every_generate_iteration() {
    let (mut m, _, a, y) = base();
    m.genvar("i");
    m.gen_for("i", 0, 8, "g_bit", |b, _i| {
        b.assign(&y, &a);
    });
    assert_msg(
        &m,
        &[],
        "module `t`: `y_o`: is driven from inside generate loop `g_bit` without indexing by \
         genvar `i`, so every iteration drives the same bits",
    );
}

#[test]
fn unknown_module() {
    let (mut m, _, a, y) = base();
    m.instance(
        Instance::new("ghost", "u_g")
            .conn("x_i", &a)
            .conn("z_o", &y),
    );
    assert_msg(
        &m,
        &[&leaf()],
        "module `t`: `ghost`: instance `u_g` refers to unknown module",
    );
}

#[test]
fn unknown_instance_port() {
    let (mut m, _, a, y) = base();
    m.instance(
        Instance::new("leaf", "u_leaf")
            .conn("x_i", &a)
            .conn("z_o", &y)
            .conn("bogus_i", &a),
    );
    assert_msg(
        &m,
        &[&leaf()],
        "module `t`: `bogus_i`: instance `u_leaf` connects a port that module `leaf` does not have",
    );
}

#[test]
fn unconnected_input_and_output() {
    let (mut m, _, _, y) = base();
    m.instance(Instance::new("leaf", "u_leaf").conn("z_o", &y));
    assert_msg(
        &m,
        &[&leaf()],
        "module `t`: `x_i`: input of module `leaf` is not connected on instance `u_leaf`",
    );
    let (mut m, _, a2, y2) = base();
    m.instance(Instance::new("leaf", "u_leaf").conn("x_i", &a2));
    m.assign(y2, &a2);
    assert_msg(
        &m,
        &[&leaf()],
        "module `t`: `z_o`: output of module `leaf` is not connected on instance `u_leaf` \
         (Verilator -Wall PINMISSING; connect it to a wire named `*unused*`)",
    );
}

#[test]
fn unknown_parameter_override() {
    let (mut m, _, a, y) = base();
    m.instance(
        Instance::new("leaf", "u_leaf")
            .param("DEPTH", 4)
            .conn("x_i", &a)
            .conn("z_o", &y),
    );
    assert_msg(
        &m,
        &[&leaf()],
        "module `t`: `DEPTH`: instance `u_leaf` overrides a parameter that module `leaf` does not have",
    );
}

#[test]
fn blocking_in_clocked_block() {
    let (mut m, clk, a, y) = base();
    let r = m.reg("r", 8);
    m.always_ff(&clk, vec![set(&r, &a)]);
    m.assign(&y, &r);
    assert_msg(
        &m,
        &[],
        "module `t`: `r`: blocking `=` in a clocked always block (use `<=`; only loop variables may use `=`)",
    );
    // A register-file reset loop: the integer loop variable is fine.
    let (mut m, clk, a, y) = base();
    let i = m.integer("i");
    let mem = m.memory("mem", 8, 4, None);
    m.always_ff(
        &clk,
        vec![for_("i", 0, 4, vec![nb(mem.idx(&i), &a)]), set(&i, 0)],
    );
    m.assign(y, mem.idx(lit(2, 0)));
    assert_eq!(msgs(&m, &[]), Vec::<String>::new());
}

#[test]
fn nonblocking_in_comb_block() {
    let (mut m, _, a, y) = base();
    let r = m.reg("r", 8);
    m.always_comb(vec![nb(&r, &a)]);
    m.assign(y, r);
    assert_msg(
        &m,
        &[],
        "module `t`: `r`: non-blocking `<=` in a combinational always block (use `=`)",
    );
}

#[test]
fn loop_variables_must_have_the_right_kind() {
    let (mut m, clk, a, y) = base();
    let r = m.reg("r", 8);
    m.wire("k", 8);
    m.always_ff(
        &clk,
        vec![for_("k", 0, 8, vec![nb(r.idx(id("k")), a.idx(id("k")))])],
    );
    m.assign(&y, &r);
    m.gen_for("j", 0, 2, "g_x", |_, _| {});
    let got = msgs(&m, &[]);
    assert!(got.contains(
        &"module `t`: `k`: is used as a procedural for-loop variable but is not declared integer"
            .to_string()
    ));
    assert!(got.contains(&"module `t`: `j`: used but not declared".to_string()));
    let (mut m, _, a, y) = base();
    m.integer("j");
    m.gen_for("j", 0, 2, "g_x", |_, _| {});
    m.assign(y, a);
    assert_msg(
        &m,
        &[],
        "module `t`: `j`: is used as a generate-loop variable but is not declared genvar",
    );
}

#[test]
fn widths_and_generate_bounds_must_be_constant() {
    let (mut m, _, a, y) = base();
    m.wire("x", &a);
    m.assign(y, a);
    assert_msg(
        &m,
        &[],
        "module `t`: `a_i`: appears in the width of `x`, which must be constant (parameters and genvars only)",
    );
}

#[test]
fn inputs_cannot_be_driven() {
    let (mut m, _, a, y) = base();
    m.assign(&a, lit(8, 0));
    m.assign(y, &a);
    assert_msg(
        &m,
        &[],
        "module `t`: `a_i`: is an input port and cannot be driven inside the module",
    );
}

#[test]
fn undriven_outputs_and_wires() {
    let (mut m, _, _, _) = base();
    let w = m.wire("w", 8);
    m.output("z_o", 8);
    m.assign(id("y_o"), w);
    let got = msgs(&m, &[]);
    assert!(got.contains(&"module `t`: `z_o`: is an output but is never driven".to_string()));
    assert!(got.contains(&"module `t`: `w`: is read but never driven".to_string()));
}

#[test]
fn instance_connection_errors() {
    let (mut m, _, a, y) = base();
    m.instance(
        Instance::new("leaf", "u_leaf")
            .conn("x_i", &a)
            .conn("x_i", &a)
            .conn("z_o", &y + 1),
    );
    let got = msgs(&m, &[&leaf()]);
    assert!(
        got.contains(&"module `t`: `x_i`: instance `u_leaf` connects this port twice".to_string())
    );
    assert!(got.contains(
        &"module `t`: `y_o`: output `z_o` of instance `u_leaf` is connected to an expression that is not assignable"
            .to_string()
    ));
}

#[test]
fn malformed_expressions() {
    let (mut m, _, a, y) = base();
    m.assign(&y, (&a + 1).slice(7, 0));
    m.assign(id("q"), lit(4, 16));
    let got = msgs(&m, &[]);
    assert!(got.contains(
        &"module `t`: `a_i`: is the base of a select but is not a plain name".to_string()
    ));
    assert!(got.contains(&"module `t`: `4'd16`: literal does not fit in 4 bits".to_string()));
}

#[test]
fn ir_roundtrips_through_json() {
    let pe = mac_pe("mac_pe", 8, 32);
    let grid = mac_grid("mac_grid", &pe, 2, 3, 8, 32);
    let text = serde_json::to_string(&grid).unwrap();
    let back: Module = serde_json::from_str(&text).unwrap();
    assert_eq!(back, grid);
    assert_eq!(emit(&back), emit(&grid));
}

#[test]
fn clog2_takes_constants_only() {
    let mut m = Module::new("t");
    let depth = m.param("DEPTH", 100);
    let aw = m.localparam("AW", clog2(&depth));
    let a = m.input("a_i", &aw);
    let y = m.output("y_o", &aw);
    m.assign(&y, &a);
    assert_eq!(msgs(&m, &[]), Vec::<String>::new());
    assert!(emit(&m).contains("localparam AW = $clog2(DEPTH);"));
    let w = m.wire("w", 1);
    m.assign(&w, lit(1, 0));
    let v = m.wire("v", clog2(&w));
    m.assign(&v, lit(1, 0));
    assert_msg(
        &m,
        &[],
        "module `t`: `w`: appears in a $clog2 argument, which must be constant (parameters and genvars only)",
    );
}
