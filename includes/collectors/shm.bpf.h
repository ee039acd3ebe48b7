/* SPDX-License-Identifier: GPL-2.0 */
/* shm: System V shared memory calls (shmget, shmat, shmdt, shmctl), per application; return
 * mode counts their errors. Each is an event in every family: its syscall wrapper
 * (trampoline, probe) and its tracepoints. */

KC_COLLECTOR(shm, shm)

KC_SYSCALL(kc_shm_shmget, shmget, kc_shm_count(KC_SHM_SHMGET, 1),
	   kc_shm_error(ret, KC_SHM_SHMGET_ERROR))
KC_SYSCALL(kc_shm_shmat, shmat, kc_shm_count(KC_SHM_SHMAT, 1),
	   kc_shm_error(ret, KC_SHM_SHMAT_ERROR))
KC_SYSCALL(kc_shm_shmdt, shmdt, kc_shm_count(KC_SHM_SHMDT, 1),
	   kc_shm_error(ret, KC_SHM_SHMDT_ERROR))
KC_SYSCALL(kc_shm_shmctl, shmctl, kc_shm_count(KC_SHM_SHMCTL, 1),
	   kc_shm_error(ret, KC_SHM_SHMCTL_ERROR))
