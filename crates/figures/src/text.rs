//! Numbers and tables as text: `%g` formatting as C and Python print it, markdown tables.

/// Formats `x` with `digits` significant digits exactly as C's and Python's `%.{digits}g`
/// do: fixed notation for exponents in `-4..digits`, scientific otherwise, trailing zeros
/// removed. `format_sig(0.4891094401482484, 15)` is `"0.489109440148248"`.
pub fn format_sig(x: f64, digits: usize) -> String {
    if !x.is_finite() {
        return if x.is_nan() {
            "nan".into()
        } else if x > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    let digits = digits.max(1);
    // `{:e}` rounds correctly to `digits` significant digits; its exponent (after rounding,
    // so 9.99..e-1 that rounds to 1.0e0 counts as 0) decides the notation, as in C.
    let sci = format!("{:.*e}", digits - 1, x);
    let (mantissa, exp) = sci.split_once('e').expect("{:e} always has an exponent");
    let exp: i32 = exp.parse().expect("{:e} exponent is an integer");
    if exp < -4 || exp >= digits as i32 {
        let mantissa = strip_zeros(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        let decimals = (digits as i32 - 1 - exp) as usize;
        strip_zeros(&format!("{:.*}", decimals, x)).to_string()
    }
}

fn strip_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// A markdown table from a header and rows of cells.
pub fn markdown_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("| {} |\n|{}\n", header.join(" | "), " --- |".repeat(header.len()));
    for row in rows {
        out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_sig_matches_python_percent_g() {
        // Reference strings from Python's "%.15g" % x.
        assert_eq!(format_sig(0.4891094401482484, 15), "0.489109440148248");
        assert_eq!(format_sig(0.13516840696778115, 15), "0.135168406967781");
        assert_eq!(format_sig(0.00012063371993464691, 15), "0.000120633719934647");
        assert_eq!(format_sig(0.5, 15), "0.5");
        assert_eq!(format_sig(1e-5, 15), "1e-05");
        assert_eq!(format_sig(1.5e-7, 3), "1.5e-07");
        assert_eq!(format_sig(123456.0, 3), "1.23e+05");
        assert_eq!(format_sig(0.99999, 3), "1");
        assert_eq!(format_sig(-2.5, 15), "-2.5");
        assert_eq!(format_sig(0.0, 15), "0");
    }

    #[test]
    fn markdown_table_has_a_separator_row() {
        let t = markdown_table(&["a", "b"], &[vec!["1".into(), "2".into()]]);
        assert_eq!(t, "| a | b |\n| --- | --- |\n| 1 | 2 |\n");
    }
}
