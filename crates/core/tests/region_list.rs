//! `RegionList::remove` of the head, a middle, the tail and the last region.

use heapkit_core::region::{RegionHeader, RegionList, Span};

struct H {
    next: *mut H,
    id: usize,
}

// SAFETY: test headers; spans are fake, never dereferenced.
unsafe impl RegionHeader for H {
    fn span(&self) -> Span {
        Span::new(self.id * 4096, 4096).unwrap()
    }

    fn next(&self) -> *mut Self {
        self.next
    }
}

fn list_of(n: usize) -> (Vec<*mut H>, RegionList<H>) {
    let mut list = RegionList::new();
    let mut headers = Vec::new();
    for id in 1..=n {
        let h = Box::into_raw(Box::new(H {
            next: list.head(),
            id,
        }));
        // SAFETY: written with `next == head`.
        unsafe { list.push(h) };
        headers.push(h);
    }
    (headers, list)
}

fn ids(list: &RegionList<H>) -> Vec<usize> {
    list.iter().map(|h| h.id).collect()
}

fn free(headers: Vec<*mut H>) {
    for h in headers {
        // SAFETY: from `Box::into_raw`, freed once.
        drop(unsafe { Box::from_raw(h) });
    }
}

#[test]
fn remove_head_middle_tail_and_last() {
    let (headers, mut list) = list_of(5); // list: 5 4 3 2 1
    let relink = |prev: *mut H, next: *mut H| {
        // SAFETY: a live header.
        unsafe { (*prev).next = next }
    };
    // SAFETY: each target is on the list; `relink` writes the link.
    unsafe {
        list.remove(headers[4], relink); // head (5)
        assert_eq!(ids(&list), [4, 3, 2, 1]);
        list.remove(headers[2], relink); // middle (3)
        assert_eq!(ids(&list), [4, 2, 1]);
        list.remove(headers[0], relink); // tail (1)
        assert_eq!(ids(&list), [4, 2]);
        list.remove(headers[1], relink); // tail (2)
        assert_eq!(ids(&list), [4]);
        list.remove(headers[3], relink); // the last one
        assert!(ids(&list).is_empty());
        assert!(list.head().is_null());
    }
    free(headers);
}

#[test]
fn find_then_remove_while_iterating_removes_every_match() {
    let (headers, mut list) = list_of(8);
    let relink = |prev: *mut H, next: *mut H| {
        // SAFETY: a live header.
        unsafe { (*prev).next = next }
    };
    while let Some(h) = list.find(|h| h.id % 2 == 0) {
        // SAFETY: found on the list.
        unsafe { list.remove(h, relink) };
    }
    assert_eq!(ids(&list), [7, 5, 3, 1]);
    free(headers);
}
