//! Max-Win-Win Coach (销售参谋): the coaching core and the `maxwin` daemon.
