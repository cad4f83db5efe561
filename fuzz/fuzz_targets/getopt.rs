//! The getopt tokenizer never panics, and every option and operand it reports points inside
//! the argv, in order.
#![no_main]

use gateway::argv::getopt::{parse, Order};
use gateway::argv::OptDef;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let Ok(s) = std::str::from_utf8(rest) else { return };
    let args: Vec<String> = s.split('\0').map(String::from).collect();
    let defs = [
        OptDef::new(&["-u", "--unit"], true),
        OptDef::new(&["-n", "--lines"], true),
        OptDef::new(&["-k", "--dmesg"], false),
        OptDef::new(&["--no-pager"], false),
        OptDef::new(&["-t"], false),
    ];
    let order = if mode & 1 == 0 { Order::Permute } else { Order::RequireOrder };
    if let Ok(p) = parse(&args, &defs, order) {
        let mut last = 0;
        for o in &p.options {
            assert!(o.index < args.len() && o.index >= last);
            last = o.index;
            assert_eq!(o.value.is_some(), defs[o.def].takes_value);
        }
        for a in &p.operands {
            assert_eq!(args[a.index], a.value);
        }
    }
});
