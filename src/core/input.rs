//! A connection's input: bytes read from its socket become whole frames for whoever speaks
//! its protocol (`process`: the core's `Broker::process` for clients, the cluster's for
//! routes). A frame split by a read is carried in the connection (`Conn::carry`), and acted
//! on once the `need` bytes it asked for are there.

use super::broker::Broker;

impl Broker {
    /// Acts on bytes that arrived for connection `t` and keeps any unfinished frame.
    pub fn ingest<P>(&mut self, t: usize, data: &[u8], process: &mut P)
    where
        P: FnMut(&mut Broker, usize, &[u8]) -> usize,
    {
        let Some(c) = self.conns.get_mut(t) else {
            return;
        };
        if c.in_len > 0 {
            c.append_in(data);
            self.process_carried(t, process);
            return;
        }
        let used = process(self, t, data);
        let c = &mut self.conns[t];
        if used < data.len() && c.closing.is_none() {
            c.carry(&data[used..]);
        }
    }

    /// Acts on the bytes a connection holds, once they can make a whole frame.
    pub fn process_carried<P>(&mut self, t: usize, process: &mut P)
    where
        P: FnMut(&mut Broker, usize, &[u8]) -> usize,
    {
        let Some(c) = self.conns.get_mut(t) else {
            return;
        };
        if c.in_len == 0 || c.in_len < c.need || c.stalled || c.closing.is_some() {
            return;
        }
        let buf = std::mem::take(&mut c.inbuf);
        let len = c.in_len;
        let used = process(self, t, &buf[..len]);
        let c = &mut self.conns[t];
        c.inbuf = buf;
        c.consume_inbuf(used);
    }
}
